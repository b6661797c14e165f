"""Every known reader shape of Odoo IoT box code that calls ``POST /odoo-enterprise/iot/x509``: the
compatibility contract of the compatible endpoint.

Read from Odoo's own sources across revisions (``load_certificate`` in
``addons/hw_drivers/tools/helpers.py`` from 13.0, later ``download_odoo_certificate`` there and in
``tools/certificate.py``, called by ``get_certificate_status``; 16.0 as OCA's OCB mirrors it in 2025).
Each function re-states one revision's reading logic, driving the HTTP library it uses (urllib3 or
requests) with the same options (retries, timeout, headers). It must NOT be made more tolerant to suit
the service: an exception escaping from here (``KeyError``, ``AttributeError``, ``TypeError``,
``json.JSONDecodeError``) is the crash of the box's main thread a real box would have, and a test that
sees one has found a broken answer.

The shapes:

- ``13.0-first``: urllib3 ``PoolManager()`` (its default retries, no timeout), headers
  ``Content-type: application/json``, ``Accept: text/plain``; no try, no status check; ``result =
  body['result']``, and it installs ``if result``, else does nothing.
- ``13.0-16.0``: the same headers, ``Retry(4)``; an exception is ``ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION``,
  a status other than 200 ``ERR_IOT_HTTPS_LOAD_REQUEST_STATUS <status>``; then ``body['result']``, ``if
  not result`` ``ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT``; then the three fields.
- ``16.0-2025``: as ``13.0-16.0`` up to the status; then gives up on ``body.get('error')``, then on
  ``body.get('result', {}).get('error')``.
- ``18.0-result-error``: as ``13.0-16.0`` up to the status; then ``body.get('result', {}).get('error')``.
- ``18.0-top-error``: as ``13.0-16.0`` up to the status; gives up ``if body.get('error') or not
  body.get('result')``.
- ``02ece93`` (17/18 at that commit): requests, ``timeout=5``, ``raise_for_status()``, ``result =
  response.json()['result']`` inside a try that catches request exceptions and ``ValueError`` only, then
  ``result['subject_cn']``: no error check at all.
- ``17.0``: requests, ``timeout=5``, ``raise_for_status()``; ``result = response.json().get('result', {})``;
  gives up on ``result.get('error')``.
- ``certificate.py``: requests, ``timeout=5`` (10 in some revisions), ``raise_for_status()``; gives up on
  ``body.get('error')``, then on ``result.get('error')``; refuses empty certificate or key strings.
- ``newest``: as ``certificate.py`` with ``timeout=95`` (the ACME library's), and any request exception
  (a non-2xx status included) retried at once, up to 5 times.

The outcomes of the shapes that only log and give up are named with the box's error vocabulary so that
all can be compared: ``NO_RESULT`` for a refusal read in the body, ``REQUEST_EXCEPTION`` for a failed
request (``raise_for_status`` included), ``REQUEST_STATUS <status>`` for the urllib3 status check.

``python field_boxes.py`` serves the shapes to a test over stdin/stdout (one JSON object a line, each
call in its own thread): the test starts it with the urllib3 it wants on ``PYTHONPATH`` (1.26 or 2.x),
so each shape runs with the library generation boxes in shops have.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import requests
import urllib3

PATH = "/odoo-enterprise/iot/x509"
OK = "OK"
NO_RESULT = "ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT"
REQUEST_EXCEPTION = "ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION"
REQUEST_STATUS = "ERR_IOT_HTTPS_LOAD_REQUEST_STATUS"
CRASH = "CRASH"  # an exception escaped: the box's main thread would die here
NEWEST_RETRIES = 5


@dataclass
class BoxOutcome:
    """Where a box's certificate request ended, what it logged, and what it would install."""

    status: str
    log: list[str] = field(default_factory=list)
    requests: int = 1
    subject_cn: str | None = None
    x509_pem: str | None = None
    private_key_pem: str | None = None
    seconds: float = 0.0  # the whole call, its retries included (set by run_shape)


def _params(db_uuid: str, enterprise_code: str | None) -> dict[str, Any]:
    return {"params": {"db_uuid": db_uuid, "enterprise_code": enterprise_code}}


def _installed(result: dict[str, Any], requests_made: int = 1) -> BoxOutcome:
    # The three reads of the field code, at once: a missing member is a KeyError, as on the box.
    return BoxOutcome(
        OK,
        requests=requests_made,
        subject_cn=result["subject_cn"],
        x509_pem=result["x509_pem"],
        private_key_pem=result["private_key_pem"],
    )


def _urllib3_post(server: str, db_uuid: str, code: str | None, retries: Any) -> Any:
    http = urllib3.PoolManager(retries=retries)
    return http.request(
        "POST",
        server.rstrip("/") + PATH,
        body=json.dumps(_params(db_uuid, code)).encode("utf8"),
        headers={"Content-type": "application/json", "Accept": "text/plain"},
    )


def v13_first(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    """No try, no status check: ``body['result']``, installed if truthy."""
    response = _urllib3_post(server, db_uuid, code, urllib3.Retry.DEFAULT)
    result = json.loads(response.data.decode("utf8"))["result"]
    if result:
        return _installed(result)
    return BoxOutcome(NO_RESULT)


def _urllib3_checked(server: str, db_uuid: str, code: str | None) -> tuple[Any, BoxOutcome | None]:
    """The later urllib3 code up to the status check: the response, or where the box stops."""
    try:
        response = _urllib3_post(server, db_uuid, code, urllib3.Retry(4))
    except Exception as exc:  # the field code catches everything here
        return None, BoxOutcome(REQUEST_EXCEPTION, log=[str(exc)])
    if response.status != 200:
        return None, BoxOutcome(f"{REQUEST_STATUS} {response.status}", log=[str(response.reason)])
    return response, None


def v13_to_16(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    response, stopped = _urllib3_checked(server, db_uuid, code)
    if stopped:
        return stopped
    result = json.loads(response.data.decode("utf8"))["result"]
    if not result:
        return BoxOutcome(NO_RESULT)
    return _installed(result)


def v16_2025(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    response, stopped = _urllib3_checked(server, db_uuid, code)
    if stopped:
        return stopped
    body = json.loads(response.data.decode())
    if body.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"server error: {body['error']}"])
    result = body.get("result", {})
    if result.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"error: {result['error']}"])
    return _installed(result)


def v18_result_error(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    response, stopped = _urllib3_checked(server, db_uuid, code)
    if stopped:
        return stopped
    result = json.loads(response.data.decode()).get("result", {})
    if result.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"error: {result['error']}"])
    return _installed(result)


def v18_top_error(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    response, stopped = _urllib3_checked(server, db_uuid, code)
    if stopped:
        return stopped
    body = json.loads(response.data.decode())
    if body.get("error") or not body.get("result"):
        return BoxOutcome(NO_RESULT, log=[f"error: {body.get('error') or 'Empty response'}"])
    return _installed(body["result"])


def v02ece93(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    """No error check: only a non-2xx refusal keeps it alive."""
    try:
        response = requests.post(server.rstrip("/") + PATH, json=_params(db_uuid, code), timeout=5)
        response.raise_for_status()
        result = response.json()["result"]
    except requests.exceptions.RequestException as exc:
        return BoxOutcome(REQUEST_EXCEPTION, log=[str(exc)])
    except ValueError:
        return BoxOutcome(NO_RESULT)
    return _installed(result)


def v17(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    try:
        response = requests.post(server.rstrip("/") + PATH, json=_params(db_uuid, code), timeout=5)
        response.raise_for_status()
        result = response.json().get("result", {})
    except (requests.exceptions.RequestException, ValueError) as exc:
        return BoxOutcome(REQUEST_EXCEPTION, log=[str(exc)])
    if result.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"error: {result['error']}"])
    return _installed(result)


def _certificate_py(
    server: str, db_uuid: str, code: str | None, *, timeout: float, retries_left: int, made: int = 1
) -> BoxOutcome:
    try:
        response = requests.post(server.rstrip("/") + PATH, json=_params(db_uuid, code), timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (requests.exceptions.RequestException, ValueError) as exc:
        if retries_left:
            again = _certificate_py(
                server, db_uuid, code, timeout=timeout, retries_left=retries_left - 1, made=made + 1
            )
            again.log.insert(0, str(exc))
            return again
        return BoxOutcome(REQUEST_EXCEPTION, log=[str(exc)], requests=made)
    if body.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"server error: {body['error']}"], requests=made)
    result = body.get("result", {})
    if result.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"error: {result['error']}"], requests=made)
    outcome = _installed(result, made)
    if not outcome.x509_pem or not outcome.private_key_pem:  # the box refuses empty strings
        return BoxOutcome(NO_RESULT, log=["the certificate received is not valid"], requests=made)
    return outcome


def certificate_py(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    return _certificate_py(server, db_uuid, code, timeout=5, retries_left=0)


def newest(server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    return _certificate_py(server, db_uuid, code, timeout=95, retries_left=NEWEST_RETRIES)


Shape = Callable[[str, str, str | None], BoxOutcome]
SHAPES: dict[str, Shape] = {
    "13.0-first": v13_first,
    "13.0-16.0": v13_to_16,
    "16.0-2025": v16_2025,
    "18.0-result-error": v18_result_error,
    "18.0-top-error": v18_top_error,
    "02ece93": v02ece93,
    "17.0": v17,
    "certificate.py": certificate_py,
    "newest": newest,
}
URLLIB3_SHAPES = {"13.0-first", "13.0-16.0", "16.0-2025", "18.0-result-error", "18.0-top-error"}


def run_shape(name: str, server: str, db_uuid: str, code: str | None) -> BoxOutcome:
    """One call of a shape; an exception escaping it is recorded as the crash it would be on a box."""
    start = time.monotonic()
    try:
        outcome = SHAPES[name](server, db_uuid, code)
    except Exception as exc:
        outcome = BoxOutcome(CRASH, log=[f"{type(exc).__name__}: {exc}"])
    outcome.seconds = time.monotonic() - start
    return outcome


def _serve() -> None:
    """Answer ``{"tag", "shape", "server", "db_uuid", "code"}`` lines, each call in its own thread;
    the first line written names the urllib3 and requests versions in use."""
    write = threading.Lock()

    def emit(message: dict[str, Any]) -> None:
        with write:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def handle(call: dict[str, Any]) -> None:
        outcome = run_shape(call["shape"], call["server"], call["db_uuid"], call["code"])
        emit({"tag": call["tag"], "outcome": asdict(outcome)})

    emit({"urllib3": urllib3.__version__, "requests": requests.__version__})
    for line in sys.stdin:
        threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()


if __name__ == "__main__":
    _serve()
