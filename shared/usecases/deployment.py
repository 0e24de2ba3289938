"""Deploying one model to one endpoint: take the endpoint's lease (with the attempt row), PATCH the trained-model
resource, verify, put the old model back when verification fails, and record the outcome with the new pointer.
Every step checks the ledger first, so a redelivery finishes what a crash left and never repeats what was done.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from azure.core.exceptions import ResourceModifiedError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.adapters.classic.errors import StudioApiError, TransportError, describe_error
from shared.adapters.deployment_book import Begun, DeploymentBook
from shared.adapters.events import EventPublisher
from shared.adapters.ledger import LeaseBusy, Ledger
from shared.adapters.studio import StudioClients
from shared.decisions import MODEL_REFUSED, Gate, superseded_by
from shared.errors import Refused
from shared.records import Current, Deployment, EndpointResult, Operation, Outcome, Run, new_operation_id, now_iso
from shared.settings import Settings, Target
from shared.usecases.model_source import ModelSource
from shared.usecases.verification import Verifier

log = logging.getLogger("shared.usecases.deployment")
LEASE_WAIT_SECONDS = 300
T = TypeVar("T")


def wait_for_lease(take: Callable[[], T]) -> T:
    """Call `take` until it stops raising LeaseBusy (exponential back-off to 1 s), for at most LEASE_WAIT_SECONDS."""
    retrying = Retrying(retry=retry_if_exception_type(LeaseBusy), stop=stop_after_delay(LEASE_WAIT_SECONDS),
                        wait=wait_exponential(multiplier=0.05, max=1.0), reraise=True)
    return retrying(take)


@dataclass
class EndpointDeployer:
    """Deploys one model to one endpoint under the endpoint's lease."""

    settings: Settings
    ledger: Ledger
    studio: StudioClients
    events: EventPublisher
    verifier: Verifier
    gate: Gate

    @property
    def book(self) -> DeploymentBook:
        return DeploymentBook(self.ledger)

    def acquire(self, target: Target, endpoint: str, owner: str) -> Current:
        return wait_for_lease(lambda: self.ledger.acquire(target.name, endpoint, owner, self.settings.lease_seconds))

    def draft(self, target: Target, endpoint: str, source: ModelSource, run: Run | None, operation: Operation,
              trigger: str, dep_id: str | None = None) -> Deployment:
        dep_id = dep_id or (f"run-{run.id}" if run is not None and operation == "promote" else new_operation_id())
        return Deployment(
            id=dep_id, target=target.name, endpoint=endpoint, operation=operation, run_id=run.id if run else None,
            model_base=source.base, model_path=source.relative, data_time=run.data_time if run else now_iso(),
            metric=run.metrics.get(self.gate.metric) if run else None, trigger=trigger)

    def begin_alone(self, draft: Deployment, owner: str) -> Begun | EndpointResult:
        """Begin one endpoint (waiting for a held lease); an EndpointResult when there is nothing to do: the lease
        stayed busy, or this attempt finished before (a redelivery)."""
        try:
            begun = wait_for_lease(lambda: self.book.begin(draft, owner, self.settings.lease_seconds))
        except LeaseBusy:
            return EndpointResult(draft.endpoint, "Pending", "another deployment holds the endpoint", draft.id)
        if begun.lease is None:
            return EndpointResult(draft.endpoint, begun.dep.outcome, begun.dep.reason, begun.dep.id)
        return begun

    def deploy(self, target: Target, endpoint: str, source: ModelSource, run: Run | None, operation: Operation,
               force: bool, trigger: str, dep_id: str | None = None) -> EndpointResult:
        """Deploy to one endpoint: lease + attempt, PATCH, verify (roll back on failure), outcome + pointer."""
        if endpoint == self.studio.default_endpoint(target):
            return EndpointResult(endpoint, "Refused", "the default endpoint is never patched")
        owner = uuid.uuid4().hex
        begun = self.begin_alone(self.draft(target, endpoint, source, run, operation, trigger, dep_id), owner)
        if isinstance(begun, EndpointResult):
            return begun
        dep = self.work(target, source, run, force, begun)
        try:
            assert begun.lease is not None
            self.book.finish(dep, begun.lease, owner)
        except ResourceModifiedError:
            log.warning("the lease on %s was taken over while deploying %s", endpoint, dep.id)
        return EndpointResult(endpoint, dep.outcome, dep.reason, dep.id)

    def work(self, target: Target, source: ModelSource, run: Run | None, force: bool, begun: Begun) -> Deployment:
        """The Studio side of one endpoint's deployment (under its lease); returns the attempt with its outcome."""
        started = time.monotonic()
        dep = begun.dep
        assert begun.lease is not None
        try:
            dep.outcome, dep.reason = self._swap(target, source, run, force, dep, begun.lease)
        except Exception as exc:
            dep.outcome, dep.reason = "Failed", f"unexpected error: {type(exc).__name__}"
            log.exception("deployment %s to %s failed", dep.id, dep.endpoint)
        dep.duration_ms = int((time.monotonic() - started) * 1000)
        return dep

    def _swap(self, target: Target, source: ModelSource, run: Run | None, force: bool, dep: Deployment,
              cur: Current) -> tuple[Outcome, str | None]:
        endpoint, subject = dep.endpoint, f"{target.name}/{dep.endpoint}"
        if dep.operation == "promote" and run is not None:
            newer = superseded_by(run.data_time, cur)
            if newer is not None:
                return "Superseded", newer
            weaker = None if force else self.gate.improvement(dep.metric, cur.metric)
            if weaker is not None:
                self.events.publish("ModelRejected", subject, {"runId": dep.run_id, "endpoint": endpoint,
                                                               "model": dep.model_path, "code": "NoImprovement",
                                                               "reason": weaker})
                return "Rejected", weaker
        mgmt = self.studio.management(target)
        try:
            before = mgmt.get_endpoint(endpoint)
            mgmt.patch_model(endpoint, target.resource_name, source.location())
        except (StudioApiError, TransportError, Refused) as exc:
            refused = isinstance(exc, StudioApiError) and exc.status == 400
            reason = f"{MODEL_REFUSED}: {describe_error(exc)}" if refused else f"PATCH failed: {describe_error(exc)}"
            self.events.publish("EndpointUpdateFailed", subject, {"runId": dep.run_id, "endpoint": endpoint,
                                                                  "model": dep.model_path, "reason": reason})
            return "Failed", reason
        problem = self.verifier.verify(target, endpoint, source.relative, run)
        if problem is not None:
            rolled = self.verifier.restore(target, endpoint, before)
            self.events.publish("EndpointUpdateFailed", subject, {
                "runId": dep.run_id, "endpoint": endpoint, "model": dep.model_path, "reason": problem})
            self.events.publish("EndpointRolledBack", subject, {
                "runId": dep.run_id, "endpoint": endpoint, "failedModel": dep.model_path,
                "restoredModel": cur.model_path, "restored": rolled is None, "reason": problem})
            return "RolledBack", problem + ("" if rolled is None else f"; the rollback also failed: {rolled}")
        cur.serve(dep)
        self.events.publish("EndpointUpdated", subject, {
            "runId": dep.run_id, "endpoint": endpoint, "target": target.name, "model": dep.model_path,
            "metric": dep.metric, "operation": dep.operation, "deploymentId": dep.id})
        return "Deployed", None
