"""Wire format of the terminal: pairing request, transaction API, and the one error shape.

Every refusal is ``{"error": "<one line>"}`` with a 4xx status; over WebSocket the same object carries the
status too. Field errors name the field first (``posId: ...``) so a POS developer sees what to fix.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

PAIR_BODY_LIMIT = 4 * 1024
API_BODY_LIMIT = 16 * 1024

M = TypeVar("M", bound=BaseModel)

PosId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Each model's validator is built on its first use (defer_build), not at import: the three builds (and
# pydantic's plugin scan with the first) were ~40 ms of 'terminal run''s start, which 'lancert up' waits
# for, and a terminal answering status calls only never needs them.


class TerminalError(Exception):
    """A refusal with an HTTP status and a one-line message, mapped to a response in one place."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


UNAUTHORIZED_CODE = TerminalError(401, "invalid, expired or already used setup code")
NO_CLIENT_CERT = TerminalError(401, "a client certificate issued by this terminal is required; pair first")
CERT_NOT_CURRENT = TerminalError(403, "this client certificate was replaced or revoked; pair again")


class PairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    posId: PosId
    setupCode: Annotated[str, StringConstraints(min_length=1, max_length=32)]


class SaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    amount: Annotated[int, Field(gt=0, le=100_000_000, description="In minor units (cents).")]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    reference: Annotated[str, StringConstraints(max_length=64)] | None = None


class WsMessage(BaseModel):
    """A message of the paired WebSocket API: ``{"type": "status"}`` or ``{"type": "sale", ...}``."""

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    type: Literal["status", "sale"]


def _field_error(exc: ValidationError) -> TerminalError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    kind = err["type"]
    if kind == "missing":
        message = "missing"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif field == "posId":
        message = "must be 1 to 64 characters of letters, digits, '-' or '_'"
    else:
        message = err["msg"].splitlines()[0]
    return TerminalError(400, f"{field}: {message}")


def parse_json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise TerminalError(400, "body: malformed JSON") from None
    except ValueError:  # Python's int-string limit: a number of over 4,300 digits
        raise TerminalError(400, "body: a number has too many digits") from None
    if not isinstance(value, dict):
        raise TerminalError(400, "body: must be a JSON object")
    return value


def parse_model(model: type[M], value: dict[str, Any]) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _field_error(exc) from None
