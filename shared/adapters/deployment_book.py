"""The ledger's deployment transactions (a part of the table ledger adapter). The attempt row and the lease on `current`
go in one entity-group transaction, the outcome and the new pointer in another, so a crash never leaves an attempt
without its lease or an outcome without its pointer. `begin_many`/`finish_many` do the same for up to 50 endpoints of
one target per transaction (a fan-out), falling back to one endpoint at a time for a batch that conflicts."""

from __future__ import annotations

import time
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters.table_rows import attempt_key, current_key, leased_by_other, target_key, to_entity
from shared.adapters.transactions import submit_transaction
from shared.errors import LeaseBusy, Stale
from shared.ports.ledger import BATCH_ENDPOINTS, LeasedAttempt
from shared.records import Current, Deployment

__all__ = ["BATCH_ENDPOINTS", "DeploymentTransactions"]


class DeploymentTransactions:
    """Begin (attempt + lease) and finish (outcome + pointer) deployments in entity-group transactions. A mixin of
    the table ledger: it uses the ledger's reads and its deployments table."""

    deployments: TableClient

    def current(self, target: str, endpoint: str) -> Current | None:
        raise NotImplementedError

    def get_deployment(self, target: str, endpoint: str, dep_id: str) -> Deployment | None:
        raise NotImplementedError

    def acquire(self, target: str, endpoint: str, owner: str, seconds: float) -> Current:
        raise NotImplementedError

    def save_deployment(self, dep: Deployment) -> None:
        raise NotImplementedError

    @staticmethod
    def _lease_ops(dep: Deployment, cur: Current | None, owner: str, seconds: float) -> tuple[Current, list[Any]]:
        partition = target_key(dep.target)
        lease = cur.model_copy() if cur is not None else Current(target=dep.target, endpoint=dep.endpoint)
        lease.etag = cur.etag if cur is not None else None
        lease.lease_owner, lease.lease_until = owner, time.time() + seconds
        lease_op: tuple[Any, ...]
        if cur is None:
            lease_op = ("create", to_entity(lease, partition, current_key(dep.endpoint)))
        else:
            lease_op = ("update", to_entity(lease, partition, current_key(dep.endpoint)),
                        {"mode": UpdateMode.REPLACE, "etag": cur.etag,
                         "match_condition": MatchConditions.IfNotModified})
        return lease, [lease_op, ("create", to_entity(dep, partition, attempt_key(dep.endpoint, dep.id)))]

    def begin(self, dep: Deployment, owner: str, seconds: float) -> LeasedAttempt:
        """Insert the attempt and take the lease.

        A redelivered attempt that already finished comes back with created=False and no lease. A duplicate of
        an attempt still Pending takes the lease alone (so it can finish what a crash left). Raises LeaseBusy.
        """
        led = self
        cur = led.current(dep.target, dep.endpoint)
        if leased_by_other(cur, owner):
            raise LeaseBusy(dep.endpoint)
        lease, ops = self._lease_ops(dep, cur, owner, seconds)
        try:
            results = submit_transaction(led.deployments, ops)
        except TableTransactionError:
            # Either the attempt exists (a redelivery) or `current` changed under us (the lease is busy).
            found = led.get_deployment(dep.target, dep.endpoint, dep.id)
            if found is not None:
                if found.outcome != "Pending":
                    return LeasedAttempt(found, False, None)
                return LeasedAttempt(found, False, led.acquire(dep.target, dep.endpoint, owner, seconds))
            raise LeaseBusy(dep.endpoint) from None
        lease.etag = results[0].get("etag")
        dep.etag = results[1].get("etag")
        return LeasedAttempt(dep, True, lease)

    def begin_many(self, deps: list[Deployment], owner: str, seconds: float,
                   currents: dict[str, Current]) -> tuple[list[LeasedAttempt], list[Deployment]]:
        """`begin` for up to BATCH_ENDPOINTS endpoints of one target in one transaction, given their `current`
        rows (read in one query). Returns what began, and the endpoints to begin one by one (a held lease, or a
        batch that conflicted: a redelivery, or a row changed since it was read)."""
        begun: list[LeasedAttempt] = []
        batch: list[tuple[Deployment, Current]] = []
        ops: list[Any] = []
        alone: list[Deployment] = []
        for dep in deps:
            cur = currents.get(dep.endpoint)
            if leased_by_other(cur, owner):
                alone.append(dep)
                continue
            lease, dep_ops = self._lease_ops(dep, cur, owner, seconds)
            batch.append((dep, lease))
            ops += dep_ops
        if not ops:
            return begun, alone
        try:
            results = submit_transaction(self.deployments, ops)
        except TableTransactionError:
            return begun, alone + [dep for dep, _ in batch]
        for i, (dep, lease) in enumerate(batch):
            lease.etag, dep.etag = results[2 * i].get("etag"), results[2 * i + 1].get("etag")
            begun.append(LeasedAttempt(dep, True, lease))
        return begun, alone

    @staticmethod
    def _finish_ops(dep: Deployment, cur: Current, owner: str) -> list[Any]:
        partition = target_key(dep.target)
        if cur.lease_owner == owner:
            cur.lease_owner, cur.lease_until = None, 0.0
        return [("update", to_entity(cur, partition, current_key(dep.endpoint)),
                 {"mode": UpdateMode.REPLACE, "etag": cur.etag, "match_condition": MatchConditions.IfNotModified}),
                ("upsert", to_entity(dep, partition, attempt_key(dep.endpoint, dep.id)), {"mode": UpdateMode.REPLACE})]

    def finish(self, dep: Deployment, cur: Current, owner: str) -> None:
        """Record the outcome and write the pointer (dropping the lease) in one transaction."""
        try:
            results = submit_transaction(self.deployments, self._finish_ops(dep, cur, owner))
            cur.etag = results[0].get("etag")
        except TableTransactionError:
            # The lease expired and someone else took over: keep the record of what we did, not the pointer - but
            # never a Deployed without its pointer (the caller decides it: Pending, or the pointer names it already)
            if dep.outcome != "Deployed":
                self.save_deployment(dep)
            raise Stale(f"the lease on {dep.endpoint} was taken over") from None

    def finish_many(self, items: list[tuple[Deployment, Current]], owner: str) -> list[Deployment]:
        """`finish` for up to BATCH_ENDPOINTS endpoints of one target; returns those whose lease was taken over."""
        if not items:
            return []
        try:
            results = submit_transaction(
                self.deployments,
                [op for dep, cur in items for op in self._finish_ops(dep, cur, owner)])
            for i, (_, cur) in enumerate(items):
                cur.etag = results[2 * i].get("etag")
            return []
        except TableTransactionError:
            lost = []
            for dep, cur in items:
                try:
                    self.finish(dep, cur, owner)
                except Stale:
                    lost.append(dep)
            return lost

