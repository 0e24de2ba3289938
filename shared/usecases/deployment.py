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

from shared import failpoints
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


def wait_for_lease(take: Callable[[], T], seconds: float = LEASE_WAIT_SECONDS) -> T:
    """Call `take` until it stops raising LeaseBusy (exponential back-off to 1 s), for at most `seconds`."""
    retrying = Retrying(retry=retry_if_exception_type(LeaseBusy), stop=stop_after_delay(seconds),
                        wait=wait_exponential(multiplier=0.05, max=1.0), reraise=True)
    return retrying(take)


@dataclass
class Plan:
    """What an operator's action deploys, decided under the endpoint's lease."""

    source: ModelSource
    run: Run
    operation: Operation
    restores: str | None = None


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

    def deploy_decided(self, target: Target, endpoint: str, decide: Callable[[Current], Plan | EndpointResult],
                       trigger: str, caller: str | None = None, forced: bool = False) -> EndpointResult:
        """Take the endpoint's lease first (waiting at most RETRAIN_INTERACTIVE_WAIT_SECONDS), decide what to deploy
        from what it serves now, and deploy that under the same lease: concurrent operator calls queue up and each
        sees what the one before did, so none repeats or undoes another's work by accident."""
        owner = uuid.uuid4().hex
        try:
            cur = wait_for_lease(lambda: self.ledger.acquire(target.name, endpoint, owner,
                                                             self.settings.lease_seconds),
                                 self.settings.interactive_wait_seconds)
        except LeaseBusy:
            raise Refused(f"another deployment to '{endpoint}' is in progress; try again shortly", "EndpointBusy",
                          conflict=True) from None
        try:
            plan = decide(cur)
        except BaseException:
            self.ledger.release(cur, owner)
            raise
        previous = cur.model_path
        if isinstance(plan, EndpointResult):
            self.ledger.release(cur, owner)
            plan.serving, plan.previous = previous, previous
            return plan
        dep = self.draft(target, endpoint, plan.source, plan.run, plan.operation, trigger)
        dep.restores, dep.caller, dep.forced = plan.restores, caller, forced
        self.ledger.add_deployment(dep)
        dep = self.work(target, plan.source, plan.run, True, Begun(dep, True, cur))
        try:
            self.book.finish(dep, cur, owner)
        except ResourceModifiedError:
            log.warning("the lease on %s was taken over while deploying %s", endpoint, dep.id)
        serving = dep.model_path if dep.outcome == "Deployed" else previous
        return EndpointResult(endpoint, dep.outcome, dep.reason, dep.id, serving, previous)

    def draft(self, target: Target, endpoint: str, source: ModelSource, run: Run | None, operation: Operation,
              trigger: str, dep_id: str | None = None) -> Deployment:
        dep_id = dep_id or (f"run-{run.id}" if run is not None and operation == "promote" else new_operation_id())
        return Deployment(
            id=dep_id, target=target.name, endpoint=endpoint, operation=operation, run_id=run.id if run else None,
            model_base=source.base, model_path=source.relative, data_time=run.data_time if run else now_iso(),
            data_order=run.order if run else None, metric=run.metrics.get(self.gate.metric) if run else None,
            trigger=trigger)

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

    def keep(self, cur: Current) -> None:
        """Renew our lease on an endpoint once half of it is gone; LeaseBusy when it is no longer ours."""
        if cur.lease_until - time.time() < self.settings.lease_seconds / 2:
            self.ledger.renew(cur, str(cur.lease_owner), self.settings.lease_seconds)

    def work(self, target: Target, source: ModelSource, run: Run | None, force: bool, begun: Begun) -> Deployment:
        """The Studio side of one endpoint's deployment (under its lease, renewed as it goes); returns the attempt
        with its outcome."""
        started = time.monotonic()
        dep = begun.dep
        assert begun.lease is not None
        try:
            self.keep(begun.lease)
            dep.outcome, dep.reason = self._swap(target, source, run, force, dep, begun.lease)
        except LeaseBusy:
            dep.outcome, dep.reason = "Pending", "the endpoint's lease was lost (this invocation was too slow); " \
                                                "another one finishes the deployment"
        except Exception as exc:
            dep.outcome, dep.reason = "Failed", f"unexpected error: {type(exc).__name__}"
            log.exception("deployment %s to %s failed", dep.id, dep.endpoint)
        dep.duration_ms = int((time.monotonic() - started) * 1000)
        return dep

    def _swap(self, target: Target, source: ModelSource, run: Run | None, force: bool, dep: Deployment,
              cur: Current) -> tuple[Outcome, str | None]:
        endpoint, subject = dep.endpoint, f"{target.name}/{dep.endpoint}"
        if dep.operation == "promote" and run is not None:
            newer = superseded_by(run, cur)
            if newer is not None:
                return "Superseded", newer
            weaker = None if force else self.gate.improvement(dep.metric, cur.metric)
            if weaker is not None:
                self.events.publish("ModelRejected", subject, {"runId": dep.run_id, "endpoint": endpoint,
                                                               "model": dep.model_path, "code": "NoImprovement",
                                                               "reason": weaker})
                return "Rejected", weaker
        mgmt = self.studio.management(target)
        row = self.verifier.smoke_row(target, run)
        try:
            before = mgmt.get_endpoint(endpoint)
            old_answers = self.verifier.answers(before, row)
            if source.by_refresh:
                mgmt.refresh(endpoint, overwrite_resources=True)
            else:
                mgmt.patch_model(endpoint, target.resource_name, source.location())
        except (StudioApiError, TransportError, Refused) as exc:
            return self._patch_failed(subject, dep, exc)
        verdict = self.verifier.verify(target, endpoint, source.relative, row, old_answers, lambda: self.keep(cur))
        if not verdict.ok:
            problem = str(verdict.problem)
            rolled = self.verifier.restore(target, endpoint, before, row, old_answers, lambda: self.keep(cur))
            self.events.publish("EndpointUpdateFailed", subject, {
                "runId": dep.run_id, "endpoint": endpoint, "model": dep.model_path, "reason": problem,
                "willRetry": verdict.transient})
            self.events.publish("EndpointRolledBack", subject, {
                "runId": dep.run_id, "endpoint": endpoint, "failedModel": dep.model_path,
                "restoredModel": cur.model_path, "restored": rolled is None, "reason": problem})
            reason = problem + ("" if rolled is None else f"; the rollback also failed: {rolled}")
            if verdict.transient:  # unproven, not wrong: the old model serves again and the attempt stays open
                return "Pending", f"{reason}; the previous model serves again and the deployment will be retried"
            return "RolledBack", reason
        failpoints.reached("after-patch")  # verified on the service, not yet in the ledger
        cur.serve(dep)
        self.events.publish("EndpointUpdated", subject, {
            "runId": dep.run_id, "endpoint": endpoint, "target": target.name, "model": dep.model_path,
            "metric": dep.metric, "operation": dep.operation, "deploymentId": dep.id})
        return "Deployed", None

    def _patch_failed(self, subject: str, dep: Deployment, exc: Exception) -> tuple[Outcome, str]:
        """A PATCH the service refused (the model's fault: final) or that did not get through (retried later)."""
        if isinstance(exc, StudioApiError) and exc.status == 400:
            outcome: Outcome = "Failed"
            reason = f"{MODEL_REFUSED}: {describe_error(exc)}"
        elif isinstance(exc, TransportError) or (isinstance(exc, StudioApiError) and exc.transient):
            outcome, reason = "Pending", f"PATCH did not get through ({describe_error(exc)}); it will be retried"
        else:
            outcome, reason = "Failed", f"PATCH failed: {describe_error(exc)}"
        self.events.publish("EndpointUpdateFailed", subject, {"runId": dep.run_id, "endpoint": dep.endpoint,
                                                              "model": dep.model_path, "reason": reason,
                                                              "willRetry": outcome == "Pending"})
        return outcome, reason
