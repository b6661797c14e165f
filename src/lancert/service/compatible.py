"""The compatible call's dialects: which generation of field IoT box asked, and the answer it can read.

Three generations of Odoo IoT box code call ``POST /odoo-enterprise/iot/x509`` and read the same answer
differently (``tests/service/field_boxes.py`` holds each one's logic, the compatibility contract):

- the **oldest** (urllib3, ``Content-type: application/json``, ``Accept: text/plain``, 4 retries, no
  timeout) does ``result = body['result']``; ``if not result`` it shows
  ``ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT``, otherwise it reads ``subject_cn``, ``x509_pem`` and
  ``private_key_pem`` at once;
- the **middle** one (requests, 5 s timeout) does ``result = body.get('result', {})`` and gives up on
  ``result.get('error')``, otherwise reads the three fields;
- the **newest** (requests, 10-95 s timeout, up to 5 retries) first gives up on a top-level ``error``,
  then reads ``result`` as the middle one does.

No single refusal satisfies the oldest and the middle one: ``{"error": ...}`` as the result is non-empty,
so the oldest reads ``result['subject_cn']`` and dies of a KeyError; an empty ``{}`` result makes the
middle one do the same, and ``null`` makes it call ``None.get``. So the refusal depends on who asks:
``"result": null`` for the oldest, ``"result": {"error", "reason"}`` for the others.

Telling them apart: only the oldest sends urllib3's ``User-Agent: python-urllib3/...`` and asks for
``Accept: text/plain``; requests sends ``python-requests/...`` and ``Accept: */*``. Either sign makes a
caller the oldest generation. Anything else (curl, httpx, a future box) gets the current, documented form.

The HTTP status: every generation checks it before reading the body (the oldest shows
``ERR_IOT_HTTPS_LOAD_REQUEST_STATUS <status>``, the others ``raise_for_status()``), so a refusal is a 200
answer. A rate limit is 429 with ``Retry-After``, and its body is in the asking generation's refusal form
too, so that even a client that skipped the status check ends in its refusal, never in a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from fastapi.responses import JSONResponse

from lancert.service.schemas import CompatibleRefusal, CompatibleResponse


class BoxGeneration(StrEnum):
    """Which refusal form a caller of the compatible endpoint can read."""

    OLDEST = "oldest"  # urllib3: tests ``result`` for emptiness only
    CURRENT = "current"  # requests (middle and newest): reads ``result.error``

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> BoxGeneration:
        """Judge by what the oldest generation, and only it, sends (see the module docstring)."""
        user_agent = headers.get("user-agent", "").strip().lower()
        accepted = {
            part.split(";", 1)[0].strip().lower() for part in headers.get("accept", "").split(",")
        } - {""}
        if user_agent.startswith("python-urllib3/") or accepted == {"text/plain"}:
            return cls.OLDEST
        return cls.CURRENT


def compatible_answer(answer: CompatibleResponse, generation: BoxGeneration) -> JSONResponse:
    """The HTTP answer for ``generation``: 200 for a certificate or a refusal, 429 for a rate limit."""
    refusal = answer.result if isinstance(answer.result, CompatibleRefusal) else None
    if refusal is not None and generation is BoxGeneration.OLDEST:
        answer = answer.model_copy(update={"result": None})
    status, headers = 200, {}
    if refusal is not None and refusal.retry_after is not None:
        status, headers = 429, {"Retry-After": str(refusal.retry_after)}
    return JSONResponse(answer.model_dump(mode="json"), status_code=status, headers=headers)
