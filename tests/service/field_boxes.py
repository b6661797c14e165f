"""The three generations of IoT box code in the field that call ``POST /odoo-enterprise/iot/x509``:
the compatibility contract of the compatible endpoint.

Each function is that generation's client logic as the boxes in shops run it (issue 10 describes it),
driving the real HTTP library it uses (urllib3 or requests). It must NOT be made more tolerant to suit
the service: a ``KeyError``, ``AttributeError`` or ``TypeError`` escaping from here is the crash a real
box would have, and a test that sees one has found a broken answer.

What each generation does:

- :func:`oldest_box` (urllib3, ``Content-type: application/json``, ``Accept: text/plain``, 4 retries,
  no timeout): ``result = body['result']``; ``if not result`` → ``ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT``;
  otherwise ``result['subject_cn']``, ``['x509_pem']`` and ``['private_key_pem']`` at once.
- :func:`middle_box` (requests, ``timeout=5``): ``result = body.get('result', {})``; ``if
  result.get('error')`` it logs the error and gives up; otherwise it reads the three fields.
- :func:`newest_box` (requests, timeout 10 to 95 s, up to 5 retries on a failed request): ``if
  body.get('error')`` it gives up, then reads ``result`` as the middle one does.

All three check the HTTP status before the body, as the field code does (the oldest shows
``ERR_IOT_HTTPS_LOAD_REQUEST_STATUS <status>``; the other two ``raise_for_status()``, which the newest
retries like any failed request). ``checks_status=False`` drops that check, to prove a body alone never
makes a box crash. The outcome of the newer two, which only log and give up, is named with the box's
error vocabulary so that all three can be compared: ``ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT`` for a
refusal, ``ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION`` for a failed request.

Each takes the service's base URL, so the same clients run against any service a fixture starts (a
fresh one, or one whose issuance is slowed down).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

PATH = "/odoo-enterprise/iot/x509"
OK = "OK"
NO_RESULT = "ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT"
REQUEST_EXCEPTION = "ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION"
REQUEST_STATUS = "ERR_IOT_HTTPS_LOAD_REQUEST_STATUS"


@dataclass
class BoxOutcome:
    """Where a box's certificate request ended, what it logged, and what it would install."""

    status: str
    log: list[str] = field(default_factory=list)
    requests: int = 1
    subject_cn: str | None = None
    x509_pem: str | None = None
    private_key_pem: str | None = None


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


def oldest_box(
    server: str, db_uuid: str, enterprise_code: str | None, *, checks_status: bool = True
) -> BoxOutcome:
    """urllib3, Content-type JSON, Accept text/plain, Retry(4), no timeout; tests ``result`` for emptiness."""
    http = urllib3.PoolManager(retries=urllib3.Retry(4))
    try:
        response = http.request(
            "POST",
            server.rstrip("/") + PATH,
            body=json.dumps(_params(db_uuid, enterprise_code)).encode("utf8"),
            headers={"Content-type": "application/json", "Accept": "text/plain"},
        )
    except Exception as exc:  # the field code catches everything here
        return BoxOutcome(REQUEST_EXCEPTION, log=[str(exc)])
    if checks_status and response.status != 200:
        return BoxOutcome(f"{REQUEST_STATUS} {response.status}", log=[str(response.reason)])
    result = json.loads(response.data.decode("utf8"))["result"]
    if not result:
        return BoxOutcome(NO_RESULT)
    return _installed(result)


def middle_box(
    server: str, db_uuid: str, enterprise_code: str | None, *, checks_status: bool = True
) -> BoxOutcome:
    """requests with ``timeout=5``; gives up on ``result.get('error')``."""
    try:
        response = requests.post(server.rstrip("/") + PATH, json=_params(db_uuid, enterprise_code), timeout=5)
        if checks_status:
            response.raise_for_status()
        body = response.json()
    except (requests.exceptions.RequestException, ValueError) as exc:
        return BoxOutcome(REQUEST_EXCEPTION, log=[str(exc)])
    result = body.get("result", {})
    if result.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"error received while getting the certificate: {result['error']}"])
    return _installed(result)


NEWEST_TIMEOUT = 10  # its versions wait 10 s (the first) to 95 s (the ACME library's timeout): the stricter


def newest_box(
    server: str,
    db_uuid: str,
    enterprise_code: str | None,
    *,
    checks_status: bool = True,
    timeout: float = NEWEST_TIMEOUT,
    retry: int = 0,
) -> BoxOutcome:
    """requests, retried up to 5 times on a failed request; gives up on ``error``, then ``result.error``."""
    try:
        response = requests.post(
            server.rstrip("/") + PATH, json=_params(db_uuid, enterprise_code), timeout=timeout
        )
        if checks_status:
            response.raise_for_status()
        body = response.json()
    except (requests.exceptions.RequestException, ValueError) as exc:
        if retry < 5:
            again = newest_box(
                server, db_uuid, enterprise_code,
                checks_status=checks_status, timeout=timeout, retry=retry + 1,
            )
            again.log.insert(0, str(exc))
            return again
        return BoxOutcome(REQUEST_EXCEPTION, log=[str(exc)], requests=retry + 1)
    if body.get("error"):
        return BoxOutcome(NO_RESULT, log=[f"server error: {body['error']}"], requests=retry + 1)
    result = body.get("result", {})
    if result.get("error"):
        return BoxOutcome(
            NO_RESULT, log=[f"error received while getting the certificate: {result['error']}"],
            requests=retry + 1,
        )
    return _installed(result, retry + 1)


Generation = Callable[..., BoxOutcome]
GENERATIONS: dict[str, Generation] = {"oldest": oldest_box, "middle": middle_box, "newest": newest_box}
