"""The ledger (Azure Table storage): training runs, and per-endpoint deployments with a `current` pointer.

- Runs: one row per training run, keyed by a hash of (container/blob, ETag): inserting it is the idempotency
  check, so a redelivered event never starts a second job.
- Deployments: one partition per target; per endpoint one row per attempt (RowKey `dep~<endpoint>~<id>`, the id
  `run-<run id>` for promotions, so a redelivery finds its earlier attempt; `op-<id>` for manual patches, rollbacks
  and endpoint creation) and a `current~<endpoint>` row. Deployers take a lease on `current` with ETag
  compare-and-swap, so promotions to one endpoint never interleave; the newest training data wins and an older run
  finishing late is recorded, not deployed. Sharing the partition lets a fan-out take the leases and record the
  outcomes of up to 50 endpoints per entity-group transaction.
- Nothing secret is stored: locations have no SAS token, there are no keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode
from pydantic import BaseModel, Field

from shared.settings import Settings
from shared.storage import pooled_transport

RunStatus = Literal["Accepted", "Rejected", "Submitted", "Running", "Finished", "Failed", "Cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = ("Accepted", "Rejected", "Submitted", "Running", "Finished", "Failed",
                                      "Cancelled")
ACTIVE_RUN_STATUSES: tuple[RunStatus, ...] = ("Accepted", "Submitted", "Running")
Outcome = Literal["Pending", "Deployed", "Superseded", "Rejected", "Failed", "RolledBack", "Created", "Skipped"]
_KEY_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f]")
_KEY_PART_UNSAFE = re.compile(r"[~/\\#?\x00-\x1f\x7f]")  # '~' separates the parts of a RowKey


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_id_for(blob_path: str, etag: str) -> str:
    return hashlib.sha256(f"{blob_path}\n{etag.strip(chr(34))}".encode()).hexdigest()[:32]


def target_key(target: str) -> str:
    return _KEY_UNSAFE.sub("_", target)


def _part(value: str) -> str:
    return _KEY_PART_UNSAFE.sub("_", value)


def current_key(endpoint: str) -> str:
    return f"current~{_part(endpoint)}"


def attempt_key(endpoint: str, dep_id: str) -> str:
    return f"dep~{_part(endpoint)}~{_part(dep_id)}"


def _quote(value: str) -> str:
    return value.replace("'", "''")


class Run(BaseModel):
    id: str
    kind: Literal["bes", "manual"] = "bes"
    status: RunStatus = "Accepted"
    target: str
    endpoints: list[str] = Field(default_factory=list)
    data_path: str | None = None
    data_etag: str | None = None
    data_time: str = Field(default_factory=now_iso)  # when the training data landed: newer data wins
    job_id: str | None = None
    model_path: str | None = None
    evaluation_path: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    rows: int | None = None
    smoke_row: dict[str, str] | None = None
    trigger: str = "blob"
    error: str | None = None
    promoted: bool = False
    claimed_by: str | None = None  # the invocation working on this run (accept/submit), until claimed_until
    claimed_until: float = 0.0
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    submitted_at: str | None = None
    finished_at: str | None = None
    etag: str | None = Field(None, exclude=True)


class Deployment(BaseModel):
    id: str
    target: str
    endpoint: str
    outcome: Outcome = "Pending"
    operation: Literal["promote", "patch", "rollback", "create"] = "promote"
    run_id: str | None = None
    model_base: str | None = None  # BaseLocation, no token
    model_path: str | None = None  # RelativeLocation
    data_time: str | None = None
    metric: float | None = None
    reason: str | None = None
    trigger: str = "blob"
    duration_ms: int | None = None
    created_at: str = Field(default_factory=now_iso)
    etag: str | None = Field(None, exclude=True)


class Current(BaseModel):
    """The `current` row of an endpoint: what it serves, and who holds the deployment lease."""

    target: str
    endpoint: str
    deployment_id: str | None = None
    run_id: str | None = None
    model_base: str | None = None
    model_path: str | None = None
    data_time: str | None = None
    metric: float | None = None
    lease_owner: str | None = None
    lease_until: float = 0.0
    etag: str | None = Field(None, exclude=True)


class LeaseBusy(Exception):
    """Another deployment holds the endpoint's lease."""


def _leased_by_other(cur: Current | None, owner: str) -> bool:
    return cur is not None and cur.lease_owner not in (None, owner) and cur.lease_until > time.time()


def _to_entity(model: BaseModel, partition: str, row: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row}
    for key, value in model.model_dump(exclude_none=False).items():
        if value is None:
            continue
        entity[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
    return entity


def _from_entity(cls: type[Any], entity: Any) -> Any:
    data = {}
    for key, info in cls.model_fields.items():
        if key not in entity:
            continue
        value = entity[key]
        if isinstance(value, str) and (info.annotation in (dict[str, float], list[str]) or
                                       "dict" in str(info.annotation) or "list" in str(info.annotation)):
            value = json.loads(value)
        data[key] = value
    obj = cls.model_validate(data)
    obj.etag = entity.metadata.get("etag") if hasattr(entity, "metadata") else None
    return obj


class Ledger:
    def __init__(self, settings: Settings, credential: Any = None) -> None:
        if settings.storage_connection_string is not None:
            self.service = TableServiceClient.from_connection_string(
                settings.storage_connection_string.get_secret_value(), transport=pooled_transport())
        else:
            url = settings.storage_table_uri or f"https://{settings.storage_account_name}.table.core.windows.net"
            self.service = TableServiceClient(url, credential=credential, transport=pooled_transport())
        self.runs: TableClient = self.service.get_table_client(f"{settings.table_prefix}Runs")
        self.deployments: TableClient = self.service.get_table_client(f"{settings.table_prefix}Deployments")

    def ensure_tables(self) -> None:
        for table in (self.runs, self.deployments):
            with contextlib.suppress(ResourceExistsError):
                table.create_table()

    # ---- runs -------------------------------------------------------------------------------------------------
    def create_run(self, run: Run) -> tuple[Run, bool]:
        """Insert the run; when it exists already (a redelivery), return the stored one and False."""
        try:
            meta = self.runs.create_entity(_to_entity(run, "run", run.id))
            run.etag = meta.get("etag")
            return run, True
        except ResourceExistsError:
            existing = self.get_run(run.id)
            assert existing is not None
            return existing, False

    def get_run(self, run_id: str) -> Run | None:
        try:
            return _from_entity(Run, self.runs.get_entity("run", run_id))  # type: ignore[no-any-return]
        except ResourceNotFoundError:
            return None

    def save_run(self, run: Run, check_etag: bool = True) -> Run:
        """Write the run back; with `check_etag`, fail (ResourceModifiedError) if it changed since it was read."""
        run.updated_at = now_iso()
        kwargs: dict[str, Any] = {}
        if check_etag and run.etag:
            kwargs = {"etag": run.etag, "match_condition": MatchConditions.IfNotModified}
        meta = self.runs.update_entity(_to_entity(run, "run", run.id), mode=UpdateMode.REPLACE, **kwargs)
        run.etag = meta.get("etag")
        return run

    def list_runs(self, statuses: tuple[str, ...] | None = None, limit: int = 200) -> list[Run]:
        if statuses:
            query = " or ".join(f"status eq '{s}'" for s in statuses)
            entities: Iterator[Any] = iter(self.runs.query_entities(f"PartitionKey eq 'run' and ({query})"))
        else:
            entities = iter(self.runs.query_entities("PartitionKey eq 'run'"))
        runs = [_from_entity(Run, e) for e in entities]
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return runs[:limit]

    # ---- deployments ---------------------------------------------------------------------------------------
    def add_deployment(self, dep: Deployment) -> tuple[Deployment, bool]:
        """Insert an attempt; when one with the same id exists (a redelivery), return it and False."""
        try:
            meta = self.deployments.create_entity(_to_entity(dep, target_key(dep.target),
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
        return _from_entity(Deployment, entity)  # type: ignore[no-any-return]

    def save_deployment(self, dep: Deployment) -> None:
        self.deployments.upsert_entity(_to_entity(dep, target_key(dep.target), attempt_key(dep.endpoint, dep.id)),
                                       mode=UpdateMode.REPLACE)

    def history(self, target: str, endpoint: str) -> list[Deployment]:
        """Every attempt on an endpoint, newest first."""
        prefix = attempt_key(endpoint, "")
        entities = self.deployments.query_entities(
            f"PartitionKey eq '{_quote(target_key(target))}' and RowKey ge '{_quote(prefix)}' and "
            f"RowKey lt '{_quote(prefix)}~'")  # keys hold no '~' past the prefix: '~' sorts above them
        deps = [_from_entity(Deployment, e) for e in entities]
        deps.sort(key=lambda d: d.created_at, reverse=True)
        return deps

    def current(self, target: str, endpoint: str) -> Current | None:
        try:
            entity = self.deployments.get_entity(target_key(target), current_key(endpoint))
        except ResourceNotFoundError:
            return None
        return _from_entity(Current, entity)  # type: ignore[no-any-return]

    def currents(self, target: str, first: str | None = None, last: str | None = None) -> dict[str, Current]:
        """The `current` rows of a target's endpoints (those from `first` to `last` by name), in one query."""
        low = current_key(first) if first is not None else "current~"
        high = f"RowKey le '{_quote(current_key(last))}'" if last is not None else "RowKey lt 'current~~'"
        entities = self.deployments.query_entities(
            f"PartitionKey eq '{_quote(target_key(target))}' and RowKey ge '{_quote(low)}' and {high}")
        found = [_from_entity(Current, e) for e in entities]
        return {c.endpoint: c for c in found}

    def acquire(self, target: str, endpoint: str, owner: str, seconds: float) -> Current:
        """Take the endpoint's deployment lease (compare-and-swap on `current`); raise LeaseBusy if held."""
        partition, row = target_key(target), current_key(endpoint)
        cur = self.current(target, endpoint)
        until = time.time() + seconds
        if cur is None:
            cur = Current(target=target, endpoint=endpoint, lease_owner=owner, lease_until=until)
            try:
                meta = self.deployments.create_entity(_to_entity(cur, partition, row))
            except ResourceExistsError:
                raise LeaseBusy(endpoint) from None
            cur.etag = meta.get("etag")
            return cur
        if _leased_by_other(cur, owner):
            raise LeaseBusy(endpoint)
        cur.lease_owner, cur.lease_until = owner, until
        try:
            meta = self.deployments.update_entity(_to_entity(cur, partition, row), mode=UpdateMode.REPLACE,
                                                  etag=cur.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise LeaseBusy(endpoint) from None
        cur.etag = meta.get("etag")
        return cur

    def release(self, cur: Current, owner: str) -> Current:
        """Write `cur` (the new pointer, or the old one unchanged) and drop the lease, if still ours."""
        if cur.lease_owner == owner:
            cur.lease_owner, cur.lease_until = None, 0.0
        meta = self.deployments.update_entity(_to_entity(cur, target_key(cur.target), current_key(cur.endpoint)),
                                              mode=UpdateMode.REPLACE, etag=cur.etag,
                                              match_condition=MatchConditions.IfNotModified)
        cur.etag = meta.get("etag")
        return cur


BATCH_ENDPOINTS = 50  # two operations per endpoint; an entity-group transaction holds at most 100


@dataclass
class Begun:
    """What `begin` gives back for one endpoint: the attempt, whether this call created it, and the `current`
    row holding our lease (None when the attempt had finished already: a redelivery)."""

    dep: Deployment
    created: bool
    lease: Current | None


class LedgerDeployments:
    """Deployment bookkeeping: the attempt row and the lease on `current` go in one entity-group transaction, the
    outcome and the new pointer in another. `begin_many`/`finish_many` do the same for up to 50 endpoints of one
    target per transaction (a fan-out), falling back to one endpoint at a time for a batch that conflicts."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @staticmethod
    def _lease_ops(dep: Deployment, cur: Current | None, owner: str, seconds: float) -> tuple[Current, list[Any]]:
        partition = target_key(dep.target)
        lease = cur.model_copy() if cur is not None else Current(target=dep.target, endpoint=dep.endpoint)
        lease.etag = cur.etag if cur is not None else None
        lease.lease_owner, lease.lease_until = owner, time.time() + seconds
        lease_op: tuple[Any, ...]
        if cur is None:
            lease_op = ("create", _to_entity(lease, partition, current_key(dep.endpoint)))
        else:
            lease_op = ("update", _to_entity(lease, partition, current_key(dep.endpoint)),
                        {"mode": UpdateMode.REPLACE, "etag": cur.etag,
                         "match_condition": MatchConditions.IfNotModified})
        return lease, [lease_op, ("create", _to_entity(dep, partition, attempt_key(dep.endpoint, dep.id)))]

    def begin(self, dep: Deployment, owner: str, seconds: float) -> Begun:
        """Insert the attempt and take the lease.

        A redelivered attempt that already finished comes back with created=False and no lease. A duplicate of
        an attempt still Pending takes the lease alone (so it can finish what a crash left). Raises LeaseBusy.
        """
        led = self.ledger
        cur = led.current(dep.target, dep.endpoint)
        if _leased_by_other(cur, owner):
            raise LeaseBusy(dep.endpoint)
        lease, ops = self._lease_ops(dep, cur, owner, seconds)
        try:
            results = led.deployments.submit_transaction(ops)
        except TableTransactionError:
            # Either the attempt exists (a redelivery) or `current` changed under us (the lease is busy).
            found = led.get_deployment(dep.target, dep.endpoint, dep.id)
            if found is not None:
                if found.outcome != "Pending":
                    return Begun(found, False, None)
                return Begun(found, False, led.acquire(dep.target, dep.endpoint, owner, seconds))
            raise LeaseBusy(dep.endpoint) from None
        lease.etag = results[0].get("etag")
        dep.etag = results[1].get("etag")
        return Begun(dep, True, lease)

    def begin_many(self, deps: list[Deployment], owner: str, seconds: float,
                   currents: dict[str, Current]) -> tuple[list[Begun], list[Deployment]]:
        """`begin` for up to BATCH_ENDPOINTS endpoints of one target in one transaction, given their `current`
        rows (read in one query). Returns what began, and the endpoints to begin one by one (a held lease, or a
        batch that conflicted: a redelivery, or a row changed since it was read)."""
        begun: list[Begun] = []
        batch: list[tuple[Deployment, Current]] = []
        ops: list[Any] = []
        alone: list[Deployment] = []
        for dep in deps:
            cur = currents.get(dep.endpoint)
            if _leased_by_other(cur, owner):
                alone.append(dep)
                continue
            lease, dep_ops = self._lease_ops(dep, cur, owner, seconds)
            batch.append((dep, lease))
            ops += dep_ops
        if not ops:
            return begun, alone
        try:
            results = self.ledger.deployments.submit_transaction(ops)
        except TableTransactionError:
            return begun, alone + [dep for dep, _ in batch]
        for i, (dep, lease) in enumerate(batch):
            lease.etag, dep.etag = results[2 * i].get("etag"), results[2 * i + 1].get("etag")
            begun.append(Begun(dep, True, lease))
        return begun, alone

    @staticmethod
    def _finish_ops(dep: Deployment, cur: Current, owner: str) -> list[Any]:
        partition = target_key(dep.target)
        if cur.lease_owner == owner:
            cur.lease_owner, cur.lease_until = None, 0.0
        return [("update", _to_entity(cur, partition, current_key(dep.endpoint)),
                 {"mode": UpdateMode.REPLACE, "etag": cur.etag, "match_condition": MatchConditions.IfNotModified}),
                ("upsert", _to_entity(dep, partition, attempt_key(dep.endpoint, dep.id)), {"mode": UpdateMode.REPLACE})]

    def finish(self, dep: Deployment, cur: Current, owner: str) -> None:
        """Record the outcome and write the pointer (dropping the lease) in one transaction."""
        try:
            results = self.ledger.deployments.submit_transaction(self._finish_ops(dep, cur, owner))
            cur.etag = results[0].get("etag")
        except TableTransactionError:
            # The lease expired and someone else took over: keep the record of what we did, not the pointer.
            self.ledger.save_deployment(dep)
            raise ResourceModifiedError("the lease was taken over") from None

    def finish_many(self, items: list[tuple[Deployment, Current]], owner: str) -> list[Deployment]:
        """`finish` for up to BATCH_ENDPOINTS endpoints of one target; returns those whose lease was taken over."""
        if not items:
            return []
        try:
            results = self.ledger.deployments.submit_transaction(
                [op for dep, cur in items for op in self._finish_ops(dep, cur, owner)])
            for i, (_, cur) in enumerate(items):
                cur.etag = results[2 * i].get("etag")
            return []
        except TableTransactionError:
            lost = []
            for dep, cur in items:
                try:
                    self.finish(dep, cur, owner)
                except ResourceModifiedError:
                    lost.append(dep)
            return lost


def new_operation_id() -> str:
    return f"op-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
