"""Errors from the Studio (classic) APIs: the service's error envelope as an exception, and transport failures."""

from __future__ import annotations

from typing import Any

from shared.errors import ServiceError

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Answers with a transient status that retrying cannot change: the endpoint cannot load its model.
PERMANENT_DETAIL_CODES = frozenset({"ResourceLoadFailed"})


class StudioApiError(ServiceError):
    """The service answered with an error: `{"error": {"code", "message", "details": [...]}}` and a status."""

    def __init__(self, status: int, code: str, message: str, detail_code: str | None = None,
                 retry_after: float | None = None, operation: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.detail_code = detail_code
        self.retry_after = retry_after
        self.operation = operation
        self.attempts = 1  # tries the failing call made (set by StudioHttp)
        self.transient = status in TRANSIENT_STATUSES and detail_code not in PERMANENT_DETAIL_CODES
        self.input_refused = status == 400
        super().__init__(f"{operation}: HTTP {status} {code}{'/' + detail_code if detail_code else ''}: {message}")

    def describe(self) -> str:
        return f"{self.code}{'/' + self.detail_code if self.detail_code else ''} (HTTP {self.status}): {self.message}"

    @classmethod
    def from_response(cls, status: int, body: Any, retry_after: float | None, operation: str) -> StudioApiError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status, f"HTTP{status}", "the service answered without an error body", None, retry_after,
                       operation)
        details = error.get("details") or []
        first = details[0] if details and isinstance(details[0], dict) else {}
        message = str(first.get("message") or error.get("message") or "")
        return cls(status, str(error.get("code") or f"HTTP{status}"), message, first.get("code"), retry_after,
                   operation)


class TransportError(ServiceError):
    """The request did not get an answer (connection refused or reset, timeout)."""

    def __init__(self, operation: str, cause: BaseException, maybe_processed: bool) -> None:
        self.operation = operation
        self.maybe_processed = maybe_processed  # a read timeout: the server may have acted on it
        super().__init__(f"{operation}: {type(cause).__name__}")

    transient = True
    unreachable = True
    code = "Unreachable"
