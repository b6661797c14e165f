"""The box's error codes: exactly the strings of docs/box.md, each with what it means and how to fix it.

Support staff know these codes from the IoT box documentation, so their spelling is a contract; the
meaning and the fix are what the homepage, ``lancert box status`` and the log show next to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    CHECK_NO_SERVER = "ERR_IOT_HTTPS_CHECK_NO_SERVER"
    CHECK_CERT_READ_EXCEPTION = "ERR_IOT_HTTPS_CHECK_CERT_READ_EXCEPTION"
    LOAD_NO_CREDENTIAL = "ERR_IOT_HTTPS_LOAD_NO_CREDENTIAL"
    LOAD_REQUEST_EXCEPTION = "ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION"
    LOAD_REQUEST_STATUS = "ERR_IOT_HTTPS_LOAD_REQUEST_STATUS"
    LOAD_REQUEST_NO_RESULT = "ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT"


@dataclass(frozen=True)
class Explanation:
    meaning: str
    fix: str


EXPLANATIONS: dict[ErrorCode, Explanation] = {
    ErrorCode.CHECK_NO_SERVER: Explanation(
        "No certificate service is configured, so the box cannot ask for a certificate.",
        "Enter the service URL in the settings below (or start the box with --server URL).",
    ),
    ErrorCode.CHECK_CERT_READ_EXCEPTION: Explanation(
        "The certificate stored on the box cannot be read (damaged, truncated, or not matching its key).",
        "Nothing to do when the service is reachable: the box replaces it with a new certificate. "
        "Otherwise fix the service connection and reload this page.",
    ),
    ErrorCode.LOAD_NO_CREDENTIAL: Explanation(
        "The database UUID or the enterprise code is missing, so the service cannot identify the database.",
        "Enter both in the Credential settings below; they are on the subscription of the database.",
    ),
    ErrorCode.LOAD_REQUEST_EXCEPTION: Explanation(
        "The certificate service cannot be reached (connection refused, timeout, DNS or TLS failure).",
        "Check the service URL, that the service is running, and that the box has network access to it; "
        "then reload this page.",
    ),
    ErrorCode.LOAD_REQUEST_STATUS: Explanation(
        "The certificate service answered with an unexpected HTTP status.",
        "Check that the service URL points to the certificate service (a 404 usually means a wrong URL, "
        "a 5xx a problem on the service); retry later by reloading this page.",
    ),
    ErrorCode.LOAD_REQUEST_NO_RESULT: Explanation(
        "The service refused: this database is not eligible for a certificate (unknown database or code, "
        "not a production database, no IoT box on the subscription, or subscription not in progress).",
        "Check the database UUID and enterprise code; make the database a production database with an "
        "IoT box line on a subscription in progress; then reload this page.",
    ),
}


@dataclass(frozen=True)
class BoxProblem:
    """One failure of a check: the code, the detail of this occurrence, and the code's explanation."""

    code: ErrorCode
    detail: str
    status: int | None = None  # the HTTP status of ERR_IOT_HTTPS_LOAD_REQUEST_STATUS

    @property
    def label(self) -> str:
        """The code as shown to users: with the HTTP status appended for LOAD_REQUEST_STATUS."""
        return f"{self.code} {self.status}" if self.status is not None else str(self.code)

    @property
    def explanation(self) -> Explanation:
        return EXPLANATIONS[self.code]

    def as_dict(self) -> dict[str, object]:
        return {"code": self.label, "detail": self.detail, "meaning": self.explanation.meaning,
                "fix": self.explanation.fix}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BoxProblem:
        label = str(data["code"])
        code, _, status = label.partition(" ")
        return cls(ErrorCode(code), str(data.get("detail", "")), int(status) if status else None)


class BoxFailure(Exception):
    """Raised inside a check; carries the problem to record. Never escapes the box's check loop."""

    def __init__(self, problem: BoxProblem) -> None:
        super().__init__(problem.label)
        self.problem = problem
