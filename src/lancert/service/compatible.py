"""The compatible call's answers: one form per case that every Odoo IoT box in the field reads cleanly.

Odoo's box-side code (``load_certificate`` in ``addons/hw_drivers/tools/helpers.py`` from 13.0, later
``download_odoo_certificate`` and ``get_certificate_status``, and ``tools/certificate.py``) calls
``POST /odoo-enterprise/iot/x509`` and reads the answer in at least eight ways. On a box the call runs
unguarded before devices and drivers load: an exception there kills the box's main thread. The reader
shapes (``tests/service/field_boxes.py`` runs each one with real urllib3 1.26 and 2.x, and requests):

=================================  =========================================  ===========================
shape (where)                      reads                                      HTTP status
=================================  =========================================  ===========================
13.0 first (urllib3, no timeout)   ``body['result']``; installs ``if result``  never checked
13.0-16.0 (urllib3, Retry(4))      ``body['result']``; ``if not result``       ``!= 200``: shows it
                                   refuses
16.0 as of 2025, 18.0 (urllib3)    ``body.get('error')``, then                 ``!= 200``: shows it
                                   ``body.get('result', {}).get('error')``
18.0 variant (urllib3)             ``body.get('result', {}).get('error')``    ``!= 200``: shows it
18.0 later (urllib3)               ``body.get('error') or not result``        ``!= 200``: shows it
17/18 at 02ece93 (requests, 5 s)   ``response.json()['result']['subject_cn']`` ``raise_for_status()``
                                   with no error check at all
17.0+ (requests, 5/10 s)           ``.get('result', {}).get('error')``,        ``raise_for_status()``
                                   some first ``body.get('error')``
newest (requests, 95 s)            as above; retries 5 times on any request   ``raise_for_status()``
                                   exception, a non-2xx status included
=================================  =========================================  ===========================

No 200 refusal suits them all: the first 13.0 code needs a falsy ``result`` (``{"error": ...}`` there
is a ``KeyError: 'subject_cn'``), the urllib3 16.0/18.0 code then calls ``None.get`` (an
``AttributeError``), and 02ece93 reads ``subject_cn`` of whatever ``result`` is. A non-2xx status is the
one signal every shape but the first checks before the body, and the first reads only ``result``. So:

- a certificate: 200, ``{"jsonrpc", "id", "result": {subject_cn, x509_pem, private_key_pem}}``;
- every refusal (unknown database or wrong code, not production, subscription not in progress, no IoT
  box line; a rate limit; a certificate still being ordered): the status of the same refusal on the
  native API (403, 429 with ``Retry-After``, 424), and the body
  ``{"jsonrpc", "id", "result": null, "error": {"code", "message", "reason", "retry_after"?}}``: the
  native API's error object, beside a ``result`` that is null because the first 13.0 code indexes
  ``body['result']`` unguarded (JSON-RPC 2.0 would leave it out). Every answer of this path carries it,
  a malformed request's 400 included.

urllib3's own ``Retry`` never re-sends a POST on a status (POST is not an idempotent method), so only the
newest box repeats a refusal: 6 requests in a row, counted as one failed guess by the rate limit
(:mod:`lancert.service.ratelimit`), so its retries never lock the database out by themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from lancert.service.errors import ServiceError, http_status

if TYPE_CHECKING:
    from lancert.wire.provisioning import CompatibleResponse

COMPATIBLE_PATH = "/odoo-enterprise/iot/x509"


def compatible_certificate(answer: CompatibleResponse) -> JSONResponse:
    """The 200 answer with the certificate, its chain and its key."""
    return JSONResponse(answer.model_dump(mode="json"))


def compatible_refusal(error: ServiceError, request_id: Any = None) -> JSONResponse:
    """Any refusal of the compatible path, in the one form every box shape reads (see above)."""
    body = {"jsonrpc": "2.0", "id": request_id, "result": None, **error.body()}
    return JSONResponse(body, status_code=http_status(error), headers=error.headers())
