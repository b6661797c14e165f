"""Wire format of the certificate service's HTTP APIs: the service answers in it, the box agent reads it.

Native API: ``POST /api/v1/certificates`` (docs/service.md, the contract with the box).
Compatible API: the JSON-RPC call that existing Odoo IoT boxes make to ``/odoo-enterprise/iot/x509``.
Strings are strict (no number silently becomes a string) and bounded, because every byte is hostile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from lancert.wire.limits import MAX_BODY_BYTES as MAX_BODY_BYTES  # re-exported: the one figure

BOX_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

# No control characters (C0, DEL, C1): a code with trailing NUL bytes used to match the code without them.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"
DbUuid = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128,
                                          pattern=NO_CONTROL_CHARACTERS)]
EnterpriseCode = Annotated[str, StringConstraints(strict=True, max_length=256, pattern=NO_CONTROL_CHARACTERS)]


class _Request(BaseModel):
    # Unknown members are ignored so that a newer box can talk to an older service.
    model_config = ConfigDict(extra="ignore")


class CertificateRequest(_Request):
    """What a box sends: its database's credentials, its own stable identifier, and a CSR."""

    db_uuid: DbUuid
    enterprise_code: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256,
                                                      pattern=NO_CONTROL_CHARACTERS)]
    box_id: Annotated[str, StringConstraints(strict=True, pattern=BOX_ID_PATTERN)] = Field(
        description="1-64 chars of [A-Za-z0-9_-], generated once by the box and kept in its state.json"
    )
    csr: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=16 * 1024)] = Field(
        description="PEM CSR made with the box's own key; SAN = *.<box-label>.<zone> or empty"
    )


class CertificateResponse(BaseModel):
    certificate_chain_pem: str = Field(description="PEM: leaf then intermediate (not the root)")
    hostname_pattern: str = Field(description="*.<box-label>.<zone>")
    box_label: str
    zone: str
    not_before: datetime
    not_after: datetime
    renew_after: datetime = Field(description="when the box should renew (about 2/3 of the lifetime)")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description="invalid_request, invalid_csr, not_eligible, name_not_allowed, "
        "too_large, rate_limited, issuance_pending, upstream_failed, not_found, internal_error"
    )
    message: str
    field: str | None = Field(default=None, description="the offending request member (invalid_request)")
    reason: str | None = Field(
        default=None,
        description="why not eligible (not_eligible), or the upstream CA's reason (upstream_failed)",
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: str = "ok"


# --- compatible JSON-RPC call of existing boxes -------------------------------------------------------


def _missing_code_is_empty(value: Any) -> Any:
    return "" if value is None else value


class CompatibleParams(_Request):
    db_uuid: DbUuid
    # Older boxes send ``enterprise_code or ''``, the newest send their setting as it is, ``null`` when
    # none was entered: either is a (refused) credential, not a malformed call the box would retry.
    enterprise_code: Annotated[EnterpriseCode, BeforeValidator(_missing_code_is_empty)] = ""


class CompatibleRequest(_Request):
    """``{"params": {"db_uuid", "enterprise_code"}}``, optionally with the JSON-RPC envelope members."""

    jsonrpc: str | None = None
    method: str | None = None
    # Echoed exactly: lax ``int | str`` validation turned ``false``/``true`` into 0/1. JSON-RPC 2.0 ids
    # are a string, a number or null; anything else (a boolean, an object) is refused.
    id: Any = None
    params: CompatibleParams

    @field_validator("id")
    @classmethod
    def _json_rpc_id(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float | None):
            raise ValueError("a JSON-RPC id is a string, a number or null")
        return value


class CompatibleCertificate(BaseModel):
    """What current boxes store: the wildcard CN, the chain for nginx, and the key the service made."""

    subject_cn: str
    x509_pem: str
    private_key_pem: str


class CompatibleRefusal(BaseModel):
    """Every refusal of the compatible call (non-2xx): ``result`` is null, because the first 13.0 boxes
    index ``body['result']`` without checking the status, and ``error`` is the native API's error object
    (:mod:`lancert.service.compatible` says why no 200 refusal suits every box in the field)."""

    jsonrpc: str = "2.0"
    id: Any = None
    result: None = None
    error: ErrorDetail


class CompatibleResponse(BaseModel):
    """The 200 answer: the certificate, its chain and the key the service made."""

    jsonrpc: str = "2.0"
    id: Any = None
    result: CompatibleCertificate
