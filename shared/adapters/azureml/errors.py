"""Azure Machine Learning's answers as the project's `ServiceError`: ARM's error envelope (`{"error": {"code",
"message"}}`), what may be retried (throttling, outages, an endpoint busy with another operation), and what the
service refused."""

from __future__ import annotations

from typing import Any

from shared.errors import ServiceError

TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


class AzureMLError(ServiceError):
    def __init__(self, operation: str, status: int | None, code: str, message: str, *,
                 retry_after: float | None = None, input_refused: bool = False, unreachable: bool = False,
                 transient: bool = False) -> None:
        self.operation, self.status, self.code, self.message = operation, status, code, message
        self.retry_after, self.input_refused, self.unreachable = retry_after, input_refused, unreachable
        self.busy = status == 409 and code == "Conflict"  # another operation runs on the endpoint: wait and retry
        self.transient = transient or unreachable or status in TRANSIENT or self.busy
        super().__init__(f"{operation}: {self.describe()}")

    def describe(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{self.code} ({where}): {self.message}"

    @classmethod
    def from_answer(cls, operation: str, status: int, body: Any, retry_after: float | None) -> AzureMLError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(operation, status, f"HTTP{status}", "Azure ML answered without an error body",
                       retry_after=retry_after)
        return cls(operation, status, str(error.get("code") or f"HTTP{status}"), str(error.get("message") or ""),
                   retry_after=retry_after)
