"""The ledger port: training runs, and per endpoint its deployment attempts and its `current` pointer, which also
carries the endpoint's deployment lease. Writes that race are conditional (etags): the errors are the project's
own - AlreadyExists, Stale, LeaseBusy, NotFound, RunMoved."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from shared.decisions import advance
from shared.errors import ClaimLost, NotFound, RunMoved, Stale
from shared.records import Current, Deployment, Run, RunStatus, Watch

CHANGE_TRIES = 5


@dataclass
class LeasedAttempt:
    """A deployment begun on one endpoint: the attempt, whether this call created it, and the `current` row holding
    our lease (None when the attempt had finished already: a redelivery)."""

    dep: Deployment
    created: bool
    lease: Current | None


class Ledger(ABC):
    # ---- runs ---------------------------------------------------------------------------------------------
    @abstractmethod
    def create_run(self, run: Run) -> tuple[Run, bool]:
        """Insert the run; when it exists already (a redelivery), the stored one and False."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run | None: ...

    @abstractmethod
    def _replace_run(self, run: Run) -> None:
        """Write the run over the stored one if its etag still matches (Stale otherwise); sets `run.etag`."""

    @abstractmethod
    def list_runs(self, statuses: tuple[str, ...] | None = None, limit: int = 200) -> list[Run]:
        """Runs (with one of `statuses`, when given), newest first."""

    @abstractmethod
    def unfinished_runs(self, statuses: tuple[str, ...]) -> list[Run]:
        """Every run in one of `statuses` (those still needing work), oldest first."""

    @abstractmethod
    def prepare(self, migrate: bool = False) -> None:
        """Make the ledger ready (tables, indexes); `migrate`: bring an older ledger's rows up to date."""

    def change(self, run: Run, status: RunStatus | None = None, reason: str | None = None, *,
               note: str | None = None, release_claim: bool = False, if_unchanged: bool = False,
               **fields: Any) -> Run:
        """The one way a run changes: move it to `status` (checked against the lifecycle, with its time and the
        reason - the run's error -, or a `note` on the transition alone), set `fields`, drop the invocation's claim
        when asked, and save it on its etag. `run` is updated in place and returned.

        A stale etag: with `if_unchanged` (a claim) Stale is raised - someone else holds the run now. Otherwise the
        run is read again: held under another claim than the one this change was made under, ClaimLost; still in
        the status this change found it in, the change is made on the fresh copy; in `status` already (someone
        made the same move), the fresh copy is kept as it is; anywhere else, RunMoved."""
        start, wanted, claim = run.status, status or run.status, run.claimed_by
        for _ in range(CHANGE_TRIES):
            advance(run, wanted, reason)
            if note is not None and wanted != start:
                run.transitions[-1]["reason"] = note
            for name, value in fields.items():
                setattr(run, name, value)
            if release_claim:
                run.claimed_by, run.claimed_until = None, 0.0
            try:
                self._replace_run(run)
                return run
            except Stale:
                if if_unchanged:
                    raise
            fresh = self.get_run(run.id)
            if fresh is None:
                raise NotFound(f"run {run.id} is gone")
            _overwrite(run, fresh)
            if claim is not None and fresh.claimed_by != claim:
                raise ClaimLost(run.id)
            if fresh.status == wanted != start:
                return run
            if fresh.status != start:
                raise RunMoved(run, wanted)
        raise Stale(f"run {run.id} kept changing under this change")

    # ---- deployments -----------------------------------------------------------------------------------------
    @abstractmethod
    def add_deployment(self, dep: Deployment) -> tuple[Deployment, bool]:
        """Insert an attempt; when one with the same id exists (a redelivery), that one and False."""

    @abstractmethod
    def get_deployment(self, target: str, endpoint: str, dep_id: str) -> Deployment | None: ...

    @abstractmethod
    def save_deployment(self, dep: Deployment) -> None:
        """Write an attempt's outcome (the attempt is the writer's: no condition)."""

    @abstractmethod
    def history(self, target: str, endpoint: str) -> list[Deployment]:
        """Every attempt on an endpoint, newest first."""

    @abstractmethod
    def current(self, target: str, endpoint: str) -> Current | None: ...

    @abstractmethod
    def currents(self, target: str, first: str | None = None, last: str | None = None) -> dict[str, Current]:
        """The `current` rows of a target's endpoints named from `first` to `last` (inclusive)."""

    @abstractmethod
    def acquire(self, target: str, endpoint: str, owner: str, seconds: float) -> Current:
        """Take the endpoint's lease (LeaseBusy while another holds it)."""

    @abstractmethod
    def renew(self, cur: Current, owner: str, seconds: float) -> None:
        """Extend a lease we hold (LeaseBusy when it is no longer ours)."""

    @abstractmethod
    def release(self, cur: Current, owner: str) -> Current:
        """Write `cur` (a new pointer, or the old one) and drop the lease, if still ours (Stale if taken over)."""

    @abstractmethod
    def begin(self, dep: Deployment, owner: str, seconds: float) -> LeasedAttempt:
        """Insert the attempt and take the lease, together. A redelivered attempt that finished comes back with
        created=False and no lease; one still Pending takes the lease alone. LeaseBusy."""

    @abstractmethod
    def begin_many(self, deps: list[Deployment], owner: str, seconds: float,
                   currents: dict[str, Current]) -> tuple[list[LeasedAttempt], list[Deployment]]:
        """`begin` for up to BATCH_ENDPOINTS endpoints of one target together, given their `current` rows. Returns
        what began, and those to begin one by one (a held lease, or a batch that conflicted)."""

    @abstractmethod
    def finish(self, dep: Deployment, cur: Current, owner: str) -> None:
        """Record the outcome and the pointer (dropping the lease) together; Stale when the lease was taken over
        (the pointer is not written; the outcome is recorded unless it is Deployed - a Deployed never stands without
        its pointer: the caller records what it becomes)."""

    @abstractmethod
    def finish_many(self, items: list[tuple[Deployment, Current]], owner: str) -> list[Deployment]:
        """`finish` for up to BATCH_ENDPOINTS endpoints; returns those whose lease was taken over."""


    # ---- watches ---------------------------------------------------------------------------------------------
    @abstractmethod
    def add_watch(self, watch: Watch) -> None:
        """Watch a deployment (writing it again replaces it)."""

    @abstractmethod
    def watches(self) -> list[Watch]:
        """Every watch, oldest first."""

    @abstractmethod
    def end_watch(self, watch: Watch) -> None:
        """Stop watching (one gone already is no error)."""


BATCH_ENDPOINTS = 50  # endpoints begun or finished together (two table operations each; a transaction holds 100)


def _overwrite(run: Run, fresh: Run) -> None:
    for name in type(run).model_fields:
        setattr(run, name, getattr(fresh, name))
    run.etag = fresh.etag
