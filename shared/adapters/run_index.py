"""Index rows in the runs table, so the questions asked of it cost what they return, not the whole history.

- `active` partition, one row per run that still needs work (RowKey: run id). Written *before* the run row and
  removed *after* the run is written terminal, so the markers are always a superset of the active runs; a marker
  whose run is terminal (a crash between the two writes) or never appeared is removed by the next reconcile.
- `newest` partition, one row per run, RowKey `<inverted creation time>~<run id>`: the table's own key order is
  newest first, so the newest N runs are the first N rows.
- `meta/schema`: written once every run of an older ledger has its index rows (`migrate`, idempotent: the
  reconcile timer runs it when the row is missing, and `python -m tools.migrate_ledger` runs it by hand). Until
  then the ledger answers from a full scan, as before.

Runs are then read by id (point reads, a few in parallel).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.transactions import submit_transaction
from shared.records import Run

log = logging.getLogger("shared.run_index")
ACTIVE, NEWEST, META = "active", "newest", "meta"
SCHEMA_ROW, SCHEMA_VERSION, SWEEP_ROW = "schema", 2, "sweep"
SWEEP_SECONDS = 24 * 3600  # how often reconcile looks for active runs without a marker (written by older code)
LOOKUP_STEP = 14  # runs a listing looks up at least at a time (some may be filtered out)
READ_THREADS = 8
STALE_MARKER_SECONDS = 600  # a marker whose run never appeared (the creation crashed) is dropped after this
_MAX_MS = 10**13 - 1


def newest_key(run: Run) -> str:
    created = datetime.fromisoformat(run.created_at.replace("Z", "+00:00"))
    return f"{_MAX_MS - int(created.timestamp() * 1000):013d}~{run.id}"


def _written_at(entity: Any) -> float:
    """When a row was last written (its service timestamp), as epoch seconds; now when unknown."""
    stamp = getattr(entity, "metadata", {}).get("timestamp")
    return stamp.timestamp() if stamp is not None else time.time()


def marker_row(run: Run) -> dict[str, Any]:
    return {"PartitionKey": ACTIVE, "RowKey": run.id, "createdAt": run.created_at}


def newest_row(run: Run) -> dict[str, Any]:
    return {"PartitionKey": NEWEST, "RowKey": newest_key(run), "runId": run.id}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class RunIndex:
    """The index rows of one runs table; `load(entities) -> runs` turns run entities into records."""

    def __init__(self, table: TableClient, load: Callable[[Iterable[Any]], list[Run]],
                 is_active: Callable[[Run], bool]) -> None:
        self.table = table
        self._load = load
        self._is_active = is_active
        self._ready: bool | None = None
        self._checked_at = 0.0
        self._pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="run-index")

    # ---- writes -------------------------------------------------------------------------------------------
    def before_create(self, run: Run) -> None:
        """The index rows of a run about to be created (upserts: a retry writes the same rows)."""
        if self._is_active(run):
            self.table.upsert_entity(marker_row(run), mode=UpdateMode.REPLACE)
        self.table.upsert_entity(newest_row(run), mode=UpdateMode.REPLACE)

    def after_duplicate(self, ours: Run, stored: Run) -> None:
        """`ours` was not created: `stored` was there already. Drop the rows written for `ours` that differ."""
        if newest_key(ours) != newest_key(stored):
            with contextlib.suppress(ResourceNotFoundError):
                self.table.delete_entity(NEWEST, newest_key(ours))
        if not self._is_active(stored):
            self.after_save(stored)

    def after_save(self, run: Run) -> None:
        """A run written terminal no longer needs its marker."""
        if not self._is_active(run):
            with contextlib.suppress(ResourceNotFoundError):
                self.table.delete_entity(ACTIVE, run.id)

    # ---- reads --------------------------------------------------------------------------------------------
    def ready(self) -> bool:
        """True once the index covers every run (the schema row exists); looked up again every 5 minutes."""
        if self._ready or (self._ready is not None and time.monotonic() - self._checked_at < 300):
            return bool(self._ready)
        try:
            self.table.get_entity(META, SCHEMA_ROW)
            self._ready = True
        except ResourceNotFoundError:
            self._ready = False
        self._checked_at = time.monotonic()
        return self._ready

    def runs_by_id(self, ids: list[str]) -> dict[str, Run]:
        """Point reads, a few at a time (an `or` of RowKeys would be a partition scan: a cost that grows with the
        history, on the service as on Azurite)."""

        def one(rid: str) -> Any:
            try:
                return self.table.get_entity("run", rid)
            except ResourceNotFoundError:
                return None

        entities = [one(ids[0])] if len(ids) == 1 else list(self._pool.map(one, ids))
        return {run.id: run for run in self._load([e for e in entities if e is not None])}

    def active(self) -> list[Run]:
        """The runs that still need work, oldest first; markers left by a crash are cleaned on the way."""
        markers = {e["RowKey"]: e for e in self.table.query_entities("PartitionKey eq @p", parameters={"p": ACTIVE})}
        runs = self.runs_by_id(list(markers))
        now = time.time()
        for rid, marker in markers.items():
            run = runs.get(rid)
            if run is not None and not self._is_active(run):
                self.after_save(run)
            elif run is None and now - _written_at(marker) > STALE_MARKER_SECONDS:
                with contextlib.suppress(ResourceNotFoundError):
                    self.table.delete_entity(ACTIVE, rid)
        live = [r for r in runs.values() if self._is_active(r)]
        live.sort(key=lambda r: r.created_at)
        return live

    def newest(self, limit: int, keep: Callable[[Run], bool]) -> list[Run]:
        """Up to `limit` runs that `keep` accepts, newest first: index rows a page at a time, their runs 14 at a
        time, stopping as soon as `limit` are found."""
        out: list[Run] = []
        pages = self.table.query_entities("PartitionKey eq @p", parameters={"p": NEWEST},
                                          results_per_page=min(max(limit, LOOKUP_STEP), 1000)).by_page()
        for page_rows in pages:
            pending = list(page_rows)
            while pending:
                take = max(limit - len(out), LOOKUP_STEP)  # as many as are still wanted, or a few more to filter
                rows, pending = pending[:take], pending[take:]
                runs = self.runs_by_id([r["runId"] for r in rows])
                for row in rows:
                    run = runs.get(row["runId"])
                    if run is not None and newest_key(run) == row["RowKey"] and keep(run):
                        out.append(run)
                        if len(out) >= limit:
                            return out
        return out

    # ---- sweep: runs an older version wrote after the migration (a rolling deployment) --------------------
    def sweep_if_due(self, unfinished: Callable[[], list[Run]]) -> int:
        """Once a day: mark every unfinished run (found by a server-side filter over all runs) that has no
        marker - a run an instance of the previous version created after the index was written. Returns the
        markers added."""
        try:
            last = float(self.table.get_entity(META, SWEEP_ROW).get("at", 0.0))
        except ResourceNotFoundError:
            last = 0.0
        if time.time() - last < SWEEP_SECONDS:
            return 0
        marked = {e["RowKey"] for e in self.table.query_entities("PartitionKey eq @p", parameters={"p": ACTIVE},
                                                                select=["RowKey"])}
        added = [r for r in unfinished() if r.id not in marked]
        for run in added:
            self.before_create(run)
        self.table.upsert_entity({"PartitionKey": META, "RowKey": SWEEP_ROW, "at": time.time()},
                                 mode=UpdateMode.REPLACE)
        if added:
            log.warning("%d unfinished run(s) had no index row (written by an older version); indexed now",
                        len(added))
        return len(added)

    # ---- migration ----------------------------------------------------------------------------------------
    def ensure(self, migrate: bool = False) -> bool:
        """Mark an empty ledger indexed at once; with `migrate`, index an older ledger's runs. True when ready."""
        if self.ready():
            return True
        first_page = next(self.table.query_entities("PartitionKey eq 'run'", results_per_page=1,
                                                    select=["RowKey"]).by_page(), None)
        if migrate or not list(first_page or []):
            self.migrate()
        return bool(self._ready)

    def migrate(self, progress: Callable[[int], None] | None = None) -> int:
        """Write the index rows of every run (idempotent), then the schema row. Returns the runs indexed."""
        count = 0
        pages = self.table.query_entities("PartitionKey eq 'run'", results_per_page=1000).by_page()
        for entities in pages:
            runs = self._load(entities)
            newest = [("upsert", newest_row(r)) for r in runs]
            active = [("upsert", marker_row(r)) for r in runs if self._is_active(r)]
            for ops in (newest, active):
                for chunk in _chunks(ops, 100):
                    submit_transaction(self.table, chunk)
            count += len(runs)
            if progress is not None:
                progress(count)
        self.table.upsert_entity({"PartitionKey": META, "RowKey": SCHEMA_ROW, "version": SCHEMA_VERSION,
                                  "runs": count}, mode=UpdateMode.REPLACE)
        self._ready = True
        log.info("ledger index written for %d run(s)", count)
        return count
