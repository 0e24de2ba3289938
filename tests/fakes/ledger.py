"""`Ledger` in memory: records stored as copies with etags, conditional writes that fail on a stale etag, leases on
`current` rows, and the begin/finish pairs done together under one lock (as the table ledger's transactions).

Races are made deterministic with `on_write(kind, record)`: called before each write - kinds "run.create",
"run.replace", "deployment.add", "deployment.save", "lease.acquire", "lease.renew", "lease.release",
"attempt.begin", "attempt.finish" - outside the ledger's lock, and not from inside another write or from the hook
itself, so a test can make a competing write (or run a whole competing use case) at that exact point. Records of
equal `created_at` (same millisecond) list in the order they were first written."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from shared.decisions import ACTIVE_RUN_STATUSES
from shared.errors import LeaseBusy, Stale
from shared.ports.ledger import LeasedAttempt, Ledger
from shared.records import Current, Deployment, Record, Run, Watch, now_iso

R = TypeVar("R", bound=Record)


def _leased_by_other(cur: Current | None, owner: str) -> bool:
    return cur is not None and cur.lease_owner not in (None, owner) and cur.lease_until > time.time()


class FakeLedger(Ledger):
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.attempts: dict[tuple[str, str, str], Deployment] = {}
        self.pointers: dict[tuple[str, str], Current] = {}
        self.watched: dict[tuple[str, str], Watch] = {}
        self.writes = 0
        self.on_write: Callable[[str, Record], None] | None = None  # see the module's docstring
        self._etags = itertools.count(1)
        self._lock = threading.RLock()
        self._local = threading.local()  # this thread's depth of writes under way, and whether in the hook
        self._first_written: dict[tuple[str, ...], int] = {}  # a record's key -> when it was first written

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self._local.depth = getattr(self._local, "depth", 0) + 1
            try:
                yield
            finally:
                self._local.depth -= 1

    def _before_write(self, kind: str, record: Record) -> None:
        """Call `on_write`, unless inside a write (its nested writes are part of it) or inside the hook."""
        hook = self.on_write
        busy: bool = getattr(self._local, "depth", 0) > 0 or getattr(self._local, "in_hook", False)
        if hook is None or busy:
            return
        self._local.in_hook = True
        try:
            hook(kind, record)
        finally:
            self._local.in_hook = False

    def _seq(self, key: tuple[str, ...]) -> int:
        return self._first_written.setdefault(key, len(self._first_written))

    def _stored(self, record: R) -> R:
        """Give `record` a new etag and keep a copy of it."""
        record.etag = f"W/\"{next(self._etags)}\""
        self.writes += 1
        copy = record.model_copy(deep=True)
        copy.etag = record.etag
        return copy

    @staticmethod
    def _out(record: R) -> R:
        copy = record.model_copy(deep=True)
        copy.etag = record.etag
        return copy

    # ---- runs -------------------------------------------------------------------------------------------------
    def create_run(self, run: Run) -> tuple[Run, bool]:
        self._before_write("run.create", run)
        with self._locked():
            if run.id in self.runs:
                return self._out(self.runs[run.id]), False
            self._seq(("run", run.id))
            self.runs[run.id] = self._stored(run)
            return run, True

    def get_run(self, run_id: str) -> Run | None:
        with self._locked():
            found = self.runs.get(run_id)
            return self._out(found) if found else None

    def _replace_run(self, run: Run) -> None:
        self._before_write("run.replace", run)
        with self._locked():
            stored = self.runs.get(run.id)
            if stored is None or (run.etag is not None and stored.etag != run.etag):
                raise Stale(f"run {run.id} changed since it was read")
            run.updated_at = now_iso()
            self.runs[run.id] = self._stored(run)

    def list_runs(self, statuses: tuple[str, ...] | None = None, limit: int = 200) -> list[Run]:
        with self._locked():
            found = [self._out(r) for r in self.runs.values() if not statuses or r.status in statuses]
        return sorted(found, key=lambda r: (r.created_at, self._seq(("run", r.id))), reverse=True)[:limit]

    def unfinished_runs(self, statuses: tuple[str, ...]) -> list[Run]:
        with self._locked():
            found = [self._out(r) for r in self.runs.values() if r.status in statuses]
        return sorted(found, key=lambda r: (r.created_at, self._seq(("run", r.id))))

    def prepare(self, migrate: bool = False) -> None:
        pass

    # ---- deployments ----------------------------------------------------------------------------------------
    def add_deployment(self, dep: Deployment) -> tuple[Deployment, bool]:
        self._before_write("deployment.add", dep)
        with self._locked():
            key = (dep.target, dep.endpoint, dep.id)
            if key in self.attempts:
                return self._out(self.attempts[key]), False
            self._seq(("attempt", *key))
            self.attempts[key] = self._stored(dep)
            return dep, True

    def get_deployment(self, target: str, endpoint: str, dep_id: str) -> Deployment | None:
        with self._locked():
            found = self.attempts.get((target, endpoint, dep_id))
            return self._out(found) if found else None

    def save_deployment(self, dep: Deployment) -> None:
        self._before_write("deployment.save", dep)
        with self._locked():
            self._seq(("attempt", dep.target, dep.endpoint, dep.id))
            self.attempts[(dep.target, dep.endpoint, dep.id)] = self._stored(dep)

    def history(self, target: str, endpoint: str) -> list[Deployment]:
        with self._locked():
            found = [self._out(d) for (t, e, _), d in self.attempts.items() if (t, e) == (target, endpoint)]
        return sorted(found, key=lambda d: (d.created_at, self._seq(("attempt", d.target, d.endpoint, d.id))),
                      reverse=True)

    def current(self, target: str, endpoint: str) -> Current | None:
        with self._locked():
            found = self.pointers.get((target, endpoint))
            return self._out(found) if found else None

    def currents(self, target: str, first: str | None = None, last: str | None = None) -> dict[str, Current]:
        with self._locked():
            return {e: self._out(c) for (t, e), c in self.pointers.items() if t == target
                    and (first is None or e >= first) and (last is None or e <= last)}

    def _write_pointer(self, cur: Current, create: bool) -> None:
        """Write `cur` on its etag (create: only when there is none); LeaseBusy when that fails."""
        stored = self.pointers.get((cur.target, cur.endpoint))
        if (stored is not None and (create or stored.etag != cur.etag)) or (stored is None and not create):
            raise LeaseBusy(cur.endpoint)
        self.pointers[(cur.target, cur.endpoint)] = self._stored(cur)

    def acquire(self, target: str, endpoint: str, owner: str, seconds: float) -> Current:
        self._before_write("lease.acquire", Current(target=target, endpoint=endpoint, lease_owner=owner))
        with self._locked():
            cur = self.current(target, endpoint)
            if _leased_by_other(cur, owner):
                raise LeaseBusy(endpoint)
            lease = cur or Current(target=target, endpoint=endpoint)
            lease.lease_owner, lease.lease_until = owner, time.time() + seconds
            self._write_pointer(lease, create=cur is None)
            return lease

    def renew(self, cur: Current, owner: str, seconds: float) -> None:
        self._before_write("lease.renew", cur)
        with self._locked():
            if cur.lease_owner != owner:
                raise LeaseBusy(cur.endpoint)
            until, cur.lease_until = cur.lease_until, time.time() + seconds
            try:
                self._write_pointer(cur, create=False)
            except LeaseBusy:
                cur.lease_until = until
                raise

    def release(self, cur: Current, owner: str) -> Current:
        self._before_write("lease.release", cur)
        with self._locked():
            if cur.lease_owner == owner:
                cur.lease_owner, cur.lease_until = None, 0.0
            try:
                self._write_pointer(cur, create=False)
            except LeaseBusy:
                raise Stale(f"the lease on {cur.endpoint} was taken over") from None
            return cur

    def begin(self, dep: Deployment, owner: str, seconds: float) -> LeasedAttempt:
        self._before_write("attempt.begin", dep)
        with self._locked():
            found = self.attempts.get((dep.target, dep.endpoint, dep.id))
            if found is not None:
                if found.outcome != "Pending":
                    return LeasedAttempt(self._out(found), False, None)
                return LeasedAttempt(self._out(found), False, self.acquire(dep.target, dep.endpoint, owner, seconds))
            lease = self.acquire(dep.target, dep.endpoint, owner, seconds)
            self._seq(("attempt", dep.target, dep.endpoint, dep.id))
            self.attempts[(dep.target, dep.endpoint, dep.id)] = self._stored(dep)
            return LeasedAttempt(dep, True, lease)

    def begin_many(self, deps: list[Deployment], owner: str, seconds: float,
                   currents: dict[str, Current]) -> tuple[list[LeasedAttempt], list[Deployment]]:
        for dep in deps:
            self._before_write("attempt.begin", dep)
        with self._locked():
            alone = [d for d in deps if _leased_by_other(currents.get(d.endpoint), owner)]
            batch = [d for d in deps if d not in alone]
            stale = any((self.pointers.get((d.target, d.endpoint)) or Current(target="", endpoint="")).etag !=
                        (currents[d.endpoint].etag if d.endpoint in currents else None) or
                        (d.target, d.endpoint, d.id) in self.attempts for d in batch)
            if stale:  # all or nothing, as a transaction
                return [], alone + batch
            return [self.begin(d, owner, seconds) for d in batch], alone

    def finish(self, dep: Deployment, cur: Current, owner: str) -> None:
        self._before_write("attempt.finish", dep)
        with self._locked():
            stored = self.pointers.get((cur.target, cur.endpoint))
            if stored is None or stored.etag != cur.etag:
                if dep.outcome != "Deployed":  # never a Deployed without its pointer, as the table ledger
                    self.save_deployment(dep)
                raise Stale(f"the lease on {dep.endpoint} was taken over")
            if cur.lease_owner == owner:
                cur.lease_owner, cur.lease_until = None, 0.0
            self.pointers[(cur.target, cur.endpoint)] = self._stored(cur)
            self.save_deployment(dep)

    def finish_many(self, items: list[tuple[Deployment, Current]], owner: str) -> list[Deployment]:
        lost = []
        for dep, cur in items:
            try:
                self.finish(dep, cur, owner)
            except Stale:
                lost.append(dep)
        return lost

    def add_watch(self, watch: Watch) -> None:
        with self._locked():
            self.watched[(watch.target, watch.id)] = self._stored(watch)

    def watches(self) -> list[Watch]:
        with self._locked():
            return sorted((self._out(w) for w in self.watched.values()), key=lambda w: w.created_at)

    def end_watch(self, watch: Watch) -> None:
        with self._locked():
            self.watched.pop((watch.target, watch.id), None)

    def active(self) -> list[Run]:
        return [r for r in self.runs.values() if r.status in ACTIVE_RUN_STATUSES]
