"""The ledger adapter (`Ledger` on Azure Table storage): training runs, and per-endpoint deployment attempts with a
`current` pointer.

- Runs: one row per training run, keyed by a hash of (container/blob, ETag): inserting it is the idempotency
  check, so a redelivered event never starts a second job.
- Deployments: one partition per target; per endpoint one row per attempt (RowKey `dep~<endpoint>~<id>`, the id
  `run-<run id>` for promotions, so a redelivery finds its earlier attempt; `op-<id>` for manual patches, rollbacks
  and endpoint creation) and a `current~<endpoint>` row. Deployers take a lease on `current` with ETag
  compare-and-swap, so deployments to one endpoint never interleave. The transactions that take leases and record
  outcomes are in `deployment_book`.
- The SDK's errors become the project's own here (Stale, LeaseBusy, NotFound).
- Nothing secret is stored: locations have no SAS token, there are no keys.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.deployment_book import DeploymentTransactions
from shared.adapters.run_index import RunIndex
from shared.adapters.table_rows import attempt_key, current_key, from_entity, leased_by_other, target_key, to_entity
from shared.adapters.transport import pooled_transport, sdk_retries
from shared.adapters.watch_rows import WatchRows
from shared.decisions import ACTIVE_RUN_STATUSES
from shared.errors import LeaseBusy, Stale
from shared.ports.ledger import Ledger
from shared.records import Current, Deployment, Run, now_iso
from shared.settings import Settings

__all__ = ["TableLedger", "attempt_key", "current_key", "from_entity", "table_names", "target_key", "to_entity"]



def table_names(prefix: str) -> tuple[str, str, str]:
    """The ledger's tables: runs, deployments, the event outbox."""
    return f"{prefix}Runs", f"{prefix}Deployments", f"{prefix}Outbox"


class TableLedger(DeploymentTransactions, WatchRows, Ledger):
    """The runs and deployments tables (and the outbox table, for the event adapter)."""

    def __init__(self, settings: Settings, credential: Any = None, retries: int = 3) -> None:
        if settings.storage_connection_string is not None:
            self.service = TableServiceClient.from_connection_string(
                settings.storage_connection_string.get_secret_value(), transport=pooled_transport(read_timeout=30),
                **sdk_retries(retries))
        else:
            url = settings.storage_table_uri or f"https://{settings.storage_account_name}.table.core.windows.net"
            self.service = TableServiceClient(url, credential=credential, transport=pooled_transport(read_timeout=30),
                                              **sdk_retries(retries))
        runs, deployments, outbox = table_names(settings.table_prefix)
        self.runs: TableClient = self.service.get_table_client(runs)
        self.deployments: TableClient = self.service.get_table_client(deployments)
        self.outbox: TableClient = self.service.get_table_client(outbox)
        self.index = RunIndex(self.runs, lambda entities: [from_entity(Run, e) for e in entities],
                              lambda run: run.status in ACTIVE_RUN_STATUSES)

    def prepare(self, migrate: bool = False) -> None:
        """Create the ledger's tables that are missing (existing ones are only looked at: in Azure the template
        creates them), and the run index (`migrate`: index an older ledger's runs)."""
        if not migrate:
            for table in (self.runs, self.deployments, self.outbox):
                if not list(self.service.query_tables("TableName eq @name", parameters={"name": table.table_name})):
                    with contextlib.suppress(ResourceExistsError):
                        table.create_table()
        self.index.ensure(migrate=migrate)

    # ---- runs -------------------------------------------------------------------------------------------------
    def create_run(self, run: Run) -> tuple[Run, bool]:
        """Insert the run; when it exists already (a redelivery), return the stored one and False."""
        self.index.before_create(run)
        try:
            meta = self.runs.create_entity(to_entity(run, "run", run.id))
            run.etag = meta.get("etag")
            return run, True
        except ResourceExistsError:
            existing = self.get_run(run.id)
            assert existing is not None
            self.index.after_duplicate(run, existing)
            return existing, False

    def get_run(self, run_id: str) -> Run | None:
        try:
            return from_entity(Run, self.runs.get_entity("run", run_id))
        except ResourceNotFoundError:
            return None

    def _replace_run(self, run: Run) -> None:
        run.updated_at = now_iso()
        kwargs: dict[str, Any] = {}
        if run.etag:
            kwargs = {"etag": run.etag, "match_condition": MatchConditions.IfNotModified}
        try:
            meta = self.runs.update_entity(to_entity(run, "run", run.id), mode=UpdateMode.REPLACE, **kwargs)
        except ResourceModifiedError:
            raise Stale(f"run {run.id} changed since it was read") from None
        run.etag = meta.get("etag")
        self.index.after_save(run)

    def list_runs(self, statuses: tuple[str, ...] | None = None, limit: int = 200) -> list[Run]:
        """Runs (with one of `statuses`, when given), newest first: from the index, reading what is returned
        (plus a page); the active runs alone when only active statuses are asked for."""
        if self.index.ready():
            if statuses and set(statuses) <= set(ACTIVE_RUN_STATUSES):
                found = [r for r in self.index.active() if r.status in statuses]
                return sorted(found, key=lambda r: r.created_at, reverse=True)[:limit]
            return self.index.newest(limit, lambda r: not statuses or r.status in statuses)
        return self._scan_runs(statuses, limit)

    def _scan_runs(self, statuses: tuple[str, ...] | None, limit: int) -> list[Run]:
        """`list_runs` on a ledger not yet indexed: every run is read."""
        names = {f"s{i}": status for i, status in enumerate(statuses or ())}
        query = "PartitionKey eq 'run'"
        if names:
            # the SDK finds parameters between spaces: keep "( " and " )" apart from them
            query += " and ( " + " or ".join(f"status eq @{name}" for name in names) + " )"
        runs = [from_entity(Run, e) for e in self.runs.query_entities(query, parameters=names)]
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return runs[:limit]

    def unfinished_runs(self, statuses: tuple[str, ...]) -> list[Run]:
        """Every run in one of `statuses` (those still needing work), oldest first; finished runs are not read
        (the active index), unless the ledger is not indexed yet. Rows written before the lifecycle had its own
        states are found too (Running, and Finished but not promoted)."""
        if self.index.ready():
            self.index.sweep_if_due(lambda: self._scan_unfinished(statuses))
            return [r for r in self.index.active() if r.status in statuses]
        return self._scan_unfinished(statuses)

    def _scan_unfinished(self, statuses: tuple[str, ...]) -> list[Run]:
        names = {f"s{i}": status for i, status in enumerate(statuses)}
        query = ("PartitionKey eq 'run' and ( " + " or ".join(f"status eq @{n}" for n in names) +
                 " or status eq @legacyRunning or ( status eq @legacyFinished and promoted eq @no ) )")
        params = {**names, "legacyRunning": "Running", "legacyFinished": "Finished", "no": False}
        runs = [from_entity(Run, e) for e in self.runs.query_entities(query, parameters=params)]
        runs.sort(key=lambda r: r.created_at)
        return runs

    # ---- deployments ---------------------------------------------------------------------------------------
    def add_deployment(self, dep: Deployment) -> tuple[Deployment, bool]:
        """Insert an attempt; when one with the same id exists (a redelivery), return it and False."""
        try:
            meta = self.deployments.create_entity(to_entity(dep, target_key(dep.target),
                                                             attempt_key(dep.endpoint, dep.id)))
            dep.etag = meta.get("etag")
            return dep, True
        except ResourceExistsError:
            found = self.get_deployment(dep.target, dep.endpoint, dep.id)
            assert found is not None
            return found, False

    def get_deployment(self, target: str, endpoint: str, dep_id: str) -> Deployment | None:
        try:
            entity = self.deployments.get_entity(target_key(target), attempt_key(endpoint, dep_id))
        except ResourceNotFoundError:
            return None
        return from_entity(Deployment, entity)

    def save_deployment(self, dep: Deployment) -> None:
        self.deployments.upsert_entity(to_entity(dep, target_key(dep.target), attempt_key(dep.endpoint, dep.id)),
                                       mode=UpdateMode.REPLACE)

    def history(self, target: str, endpoint: str) -> list[Deployment]:
        """Every attempt on an endpoint, newest first."""
        prefix = attempt_key(endpoint, "")
        entities = self.deployments.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",  # '~' sorts above every key character
            parameters={"pk": target_key(target), "low": prefix, "high": prefix + "~"})
        deps = [from_entity(Deployment, e) for e in entities]
        deps.sort(key=lambda d: d.created_at, reverse=True)
        return deps

    def current(self, target: str, endpoint: str) -> Current | None:
        try:
            entity = self.deployments.get_entity(target_key(target), current_key(endpoint))
        except ResourceNotFoundError:
            return None
        return from_entity(Current, entity)

    def currents(self, target: str, first: str | None = None, last: str | None = None) -> dict[str, Current]:
        """The `current` rows of a target's endpoints (those from `first` to `last` by name), in one query."""
        params = {"pk": target_key(target), "low": current_key(first) if first is not None else "current~",
                  "high": current_key(last) if last is not None else "current~~"}
        upper = "RowKey le @high" if last is not None else "RowKey lt @high"
        entities = self.deployments.query_entities(f"PartitionKey eq @pk and RowKey ge @low and {upper}",
                                                   parameters=params)
        return {c.endpoint: c for c in (from_entity(Current, e) for e in entities)}

    def acquire(self, target: str, endpoint: str, owner: str, seconds: float) -> Current:
        """Take the endpoint's deployment lease (compare-and-swap on `current`); raise LeaseBusy if held."""
        partition, row = target_key(target), current_key(endpoint)
        cur = self.current(target, endpoint)
        until = time.time() + seconds
        if cur is None:
            cur = Current(target=target, endpoint=endpoint, lease_owner=owner, lease_until=until)
            try:
                meta = self.deployments.create_entity(to_entity(cur, partition, row))
            except ResourceExistsError:
                raise LeaseBusy(endpoint) from None
            cur.etag = meta.get("etag")
            return cur
        if leased_by_other(cur, owner):
            raise LeaseBusy(endpoint)
        cur.lease_owner, cur.lease_until = owner, until
        try:
            meta = self.deployments.update_entity(to_entity(cur, partition, row), mode=UpdateMode.REPLACE,
                                                  etag=cur.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise LeaseBusy(endpoint) from None
        cur.etag = meta.get("etag")
        return cur

    def renew(self, cur: Current, owner: str, seconds: float) -> None:
        """Extend a lease we hold (compare-and-swap); raise LeaseBusy when it is no longer ours."""
        if cur.lease_owner != owner:
            raise LeaseBusy(cur.endpoint)
        until, cur.lease_until = cur.lease_until, time.time() + seconds
        try:
            meta = self.deployments.update_entity(to_entity(cur, target_key(cur.target), current_key(cur.endpoint)),
                                                  mode=UpdateMode.REPLACE, etag=cur.etag,
                                                  match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            cur.lease_until = until
            raise LeaseBusy(cur.endpoint) from None
        cur.etag = meta.get("etag")

    def release(self, cur: Current, owner: str) -> Current:
        """Write `cur` (the new pointer, or the old one unchanged) and drop the lease, if still ours."""
        if cur.lease_owner == owner:
            cur.lease_owner, cur.lease_until = None, 0.0
        try:
            meta = self.deployments.update_entity(to_entity(cur, target_key(cur.target), current_key(cur.endpoint)),
                                                  mode=UpdateMode.REPLACE, etag=cur.etag,
                                                  match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise Stale(f"the lease on {cur.endpoint} was taken over") from None
        cur.etag = meta.get("etag")
        return cur
