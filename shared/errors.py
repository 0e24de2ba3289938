"""The library's own exceptions. Use cases raise and catch only these: adapters translate what their SDKs and
services raise into them (no azure-core exception above the adapters). Entry points map them to answers (HTTP
status, rejected/ with a reason)."""

from __future__ import annotations


class NotFound(LookupError):
    """A run, endpoint, model, blob or deployment that does not exist."""


class AlreadyExists(Exception):
    """A create-only write found something there already."""


class Stale(Exception):
    """A conditional write failed: the record or blob changed since it was read (its etag)."""


class LeaseBusy(Exception):
    """Another deployment holds the endpoint's lease."""


class Refused(ValueError):
    """An operation refused by a rule: `code` names the rule; `conflict` marks a refusal due to the present state
    (default endpoint, nothing to roll back to) rather than to a malformed request."""

    def __init__(self, message: str, code: str = "InvalidRequest", conflict: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.conflict = conflict


class ClaimLost(RuntimeError):
    """Another invocation took over a run's claim (ours had lapsed)."""


class ServiceError(Exception):
    """A call to a training or serving service failed. `transient`: trying again later may work (throttling,
    timeouts, an outage); otherwise the service refused. `input_refused`: it refused what it was given (a model it
    will not take). `retry_after`: seconds the service asked for, when it did. Adapters raise subclasses."""

    transient: bool = False
    input_refused: bool = False
    unreachable: bool = False  # no answer at all (refused, reset, timed out)
    retry_after: float | None = None
    status: int | None = None
    code: str = "ServiceError"
    message: str = ""

    @property
    def throttling(self) -> bool:
        """The service asked us to slow down: a 429, or a transient answer that said when to come back
        (Retry-After). What every instance honours (`usecases.pace`)."""
        return self.transient and (self.status == 429 or bool(self.retry_after))

    def describe(self) -> str:
        """What went wrong, for a record or an answer (never a key or token)."""
        return str(self)


def describe(exc: BaseException) -> str:
    return exc.describe() if isinstance(exc, ServiceError) else str(exc)


class DataRejected(ValueError):
    """A file fails a check. `code` is machine-readable, `line` is 1-based (None when not line-specific)."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        self.code = code
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)

    def as_reason(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "line": self.line}


class RunMoved(RuntimeError):
    """A run changed under a change that could not be made on the new state: `run` is the run as it is now."""

    def __init__(self, run: object, wanted: str) -> None:
        super().__init__(f"run {getattr(run, 'id', '?')} is {getattr(run, 'status', '?')} now; it cannot become "
                         f"{wanted}")
        self.run = run
