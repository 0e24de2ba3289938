"""The library's own exceptions: what a caller did wrong or asked for that does not exist. Entry points map them
to answers (HTTP status, rejected/ with a reason); adapters' errors (Studio, storage) are theirs."""

from __future__ import annotations


class NotFound(LookupError):
    """A run, endpoint, model or deployment that does not exist."""


class Refused(ValueError):
    """An operation refused by a rule: `code` names the rule; `conflict` marks a refusal due to the present state
    (default endpoint, nothing to roll back to) rather than to a malformed request."""

    def __init__(self, message: str, code: str = "InvalidRequest", conflict: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.conflict = conflict


class ClaimLost(RuntimeError):
    """Another invocation took over a run's claim (ours had lapsed)."""


class DataRejected(ValueError):
    """A file fails a check. `code` is machine-readable, `line` is 1-based (None when not line-specific)."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        self.code = code
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)

    def as_reason(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "line": self.line}
