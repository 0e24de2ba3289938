"""The serving target port: one target's scoring endpoints - which exist, what one serves, putting a model in
service, proving it answers, restoring what served before - and the endpoint that may never be touched."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ServiceError

Answers = list[dict[str, str]]
Keepalive = Callable[[], None]


@dataclass(frozen=True)
class ModelRef:
    """A model to serve: its path (`<container>/<name>`) at `base` (None: the app's own storage), and the training
    job that made it (an adapter may ask the job for a fresh way to reach it). No secret in here."""

    path: str
    base: str | None = None
    job_id: str | None = None


@dataclass
class EndpointInfo:
    """An endpoint as the service shows it: what it serves (model path and base), and the service's own details
    for the API (no keys)."""

    name: str
    model_path: str | None
    model_base: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Observed:
    """What an endpoint served, and how it answered the smoke row, before a swap: what a restore goes back to."""

    endpoint: EndpointInfo
    answers: Answers | None
    state: Any = None  # the adapter's own record of the endpoint (to put it back exactly)
    failing: bool = False  # it answered the smoke row with an error retrying cannot fix (its model cannot load)


@dataclass
class Verdict:
    problem: str | None = None
    transient: bool = False  # the check itself could not be done (throttling, timeouts): try again later
    # The service did not take the model (a deployment that could not be made, found out after put_in_service
    # returned): nothing was switched; the outcome is that of a put the service refused (`put_failed`).
    not_taken: ServiceError | None = None
    # The check was throttled (a 429, or Retry-After): the service's error, so every instance can hold off.
    throttle: ServiceError | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class ServingTarget(ABC):
    """One target's scoring endpoints. Errors: `shared.errors.ServiceError`."""

    label = "service"  # what the health check calls the service
    proves_later = False  # verify_once and recall are implemented: a swap can be proven by scheduled looks

    @abstractmethod
    def protected_endpoint(self) -> str | None:
        """The endpoint that is never changed (Studio (classic)'s default endpoint follows the experiment)."""

    @abstractmethod
    def endpoint(self, name: str) -> EndpointInfo | None:
        """The endpoint, or None when it does not exist."""

    @abstractmethod
    def endpoints(self) -> list[EndpointInfo]:
        """Every endpoint, the protected one included."""

    @abstractmethod
    def endpoint_names(self) -> list[str]:
        """The names of every endpoint but the protected one (cheap: a service may hold 10,000)."""

    @abstractmethod
    def create_endpoint(self, name: str, options: dict[str, Any]) -> EndpointInfo:
        """Create an endpoint (`options`: the service's own, e.g. description, throttle level). AlreadyExists when
        it exists and this call did not create it."""

    @abstractmethod
    def observe(self, name: str, smoke_row: dict[str, str] | None) -> Observed:
        """What the endpoint serves now, and how it answers the row (None when it does not answer)."""

    @abstractmethod
    def put_in_service(self, name: str, model: ModelRef, keepalive: Keepalive) -> None:
        """Make the endpoint serve `model` (the service may take a while to switch); `keepalive` is called while it
        waits."""

    @abstractmethod
    def verify(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
               keepalive: Keepalive) -> Verdict:
        """Is `model` the one answering, and does it answer? `keepalive` is called while it waits."""

    @abstractmethod
    def restore(self, name: str, before: Observed, smoke_row: dict[str, str] | None,
                keepalive: Keepalive) -> str | None:
        """Put back what served before, and check it answers as before; None on success, else why not."""

    def verify_once(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
                    waited: float) -> Verdict | None:
        """One look, `waited` seconds after `model` was put in service: a Verdict when it is decided (proven, or
        failed), None when it is not proven yet (look again later). A ServiceError when the look could not be made
        (the service throttled it - `throttling`, with its Retry-After - or did not answer): the caller holds every
        instance off when throttled, and looks again later or, past the verification's bound, leaves the swap
        unproven. No waiting here: the caller schedules the next look."""
        raise NotImplementedError(f"{type(self).__name__} proves a swap only by waiting (verify)")

    def baseline(self, name: str, model: ModelRef, before: Observed) -> Observed:
        """`before` as what a swap to `model` goes back to: without what the swap itself brought in (a retried
        swap observes the traffic its first attempt moved). As observed, by default."""
        return before

    def kept(self, before: Observed) -> Any:
        """What of `before` a message must carry for `recall` (JSON; None: recall rebuilds it all)."""
        return None

    def recall(self, name: str, previous: ModelRef | None, answers: Answers | None, kept: Any = None) -> Observed:
        """What `observe` saw before a swap, rebuilt from what the ledger and a message keep (the model that served
        - `previous` -, its answers, and what `kept` said to carry): enough to `restore` it and to prove the swap
        in a later invocation."""
        raise NotImplementedError(f"{type(self).__name__} cannot rebuild what it observed")

    def proof_seconds(self, switch: float, poll: float) -> float:
        """How long after a model is put in service its proof may take (past it: unproven, tried again later)."""
        return 2 * switch + poll

    @abstractmethod
    def check(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None) -> Verdict:
        """Does the endpoint still serve `model` and answer (one look, no waiting)? A problem that is `transient`
        (throttling, timeouts) says nothing about the model."""

    @abstractmethod
    def health(self) -> dict[str, Any]:
        """One quick look at the service: {"ok": bool, ...}."""
