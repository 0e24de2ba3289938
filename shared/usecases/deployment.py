"""Deploying one model to one endpoint: take the endpoint's lease (with the attempt row), put the model in service,
verify, put the old model back when verification fails, and record the outcome with the new pointer. Every step
checks the ledger first, so a redelivery finishes what a crash left and never repeats what was done.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared import failpoints, records
from shared.decisions import HANDED_OFF, proven_on_queue, superseded_by
from shared.errors import LeaseBusy, Refused, ServiceError
from shared.events import EndpointRolledBack, EndpointUpdated, EndpointUpdateFailed, ModelRejected
from shared.gate import Gate
from shared.operator_rules import decided_on_other
from shared.ports.events import EventSink
from shared.ports.ledger import LeasedAttempt, Ledger
from shared.ports.services import Services
from shared.ports.serving import ModelRef, Observed, ServingTarget, Verdict
from shared.records import Current, Deployment, EndpointResult, Operation, Outcome, Run
from shared.settings import Settings, Target
from shared.usecases.outcomes import adopt, carry_out_and_record, not_handed_off, put_failed

log = logging.getLogger("shared.usecases.deployment")
LEASE_WAIT_SECONDS = 300
CHECKED_AGAIN = ": it is checked again later"
T = TypeVar("T")


def wait_for_lease(take: Callable[[], T], seconds: float = LEASE_WAIT_SECONDS) -> T:
    """Call `take` until it stops raising LeaseBusy (exponential back-off to 1 s), for at most `seconds`."""
    retrying = Retrying(retry=retry_if_exception_type(LeaseBusy), stop=stop_after_delay(seconds),
                        wait=wait_exponential(multiplier=0.05, max=1.0), reraise=True)
    return retrying(take)


@dataclass
class DeploymentPlan:
    """What an operator's action deploys, decided under the endpoint's lease."""

    model: ModelRef
    run: Run
    operation: Operation
    restores: str | None = None


@dataclass
class InService:
    """A model put in service, not proven yet: what served before (to restore it) and the smoke row."""

    before: Observed
    row: dict[str, str] | None


@dataclass
class EndpointDeployer:
    """Deploys one model to one endpoint under the endpoint's lease."""

    settings: Settings
    ledger: Ledger
    services: Services
    events: EventSink
    gate: Gate
    throttled: Callable[[str, float | None], None] | None = None  # a target throttled us (Retry-After, if said)
    hand_off: Callable[[str], object] | None = None  # a run's promotion on the work queue (QueuedFanOut sets it)

    def acquire(self, target: Target, endpoint: str, owner: str) -> Current:
        return wait_for_lease(lambda: self.ledger.acquire(target.name, endpoint, owner, self.settings.lease_seconds))

    def deploy_decided(self, target: Target, endpoint: str,
                       decide: Callable[[Current], DeploymentPlan | EndpointResult], trigger: str,
                       caller: str | None = None, forced: bool = False) -> EndpointResult:
        """Take the endpoint's lease first (waiting at most RETRAIN_INTERACTIVE_WAIT_SECONDS), decide what to deploy
        from what it serves now and deploy that under the same lease (concurrent operator calls queue up, each seeing
        what the one before did) - a long proof (`queued_proof`: Azure ML) on the work queue: Pending (HANDED_OFF)."""
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
        # The action's run is stored (decide stored it); its attempt is `run-<run>`, so reconcile finishes it.
        dep = self.new_attempt(target, endpoint, plan.model, plan.run, plan.operation, trigger, f"run-{plan.run.id}")
        dep.restores, dep.caller, dep.forced = plan.restores, caller, forced
        self.ledger.add_deployment(dep)
        if self.hand_off is not None and queued_proof(self.settings, self.services.serving(target)):
            hand_off(self.ledger, self.hand_off, dep, plan.run, cur, owner)
            return EndpointResult(endpoint, "Pending", HANDED_OFF, dep.id, previous, previous)
        dep = carry_out_and_record(self, target, plan.model, plan.run, True, LeasedAttempt(dep, True, cur), owner)
        serving = dep.model_path if dep.outcome == "Deployed" else previous
        return EndpointResult(endpoint, dep.outcome, dep.reason, dep.id, serving, previous)

    def new_attempt(self, target: Target, endpoint: str, model: ModelRef, run: Run | None, operation: Operation,
                    trigger: str, dep_id: str | None = None) -> Deployment:
        """The attempt row of a deployment (not stored yet). A run's promotion has the id `run-<run>`, so a
        redelivery finds its earlier attempt."""
        dep_id = dep_id or (f"run-{run.id}" if run and operation == "promote" else records.new_operation_id())
        return Deployment(
            id=dep_id, target=target.name, endpoint=endpoint, operation=operation, run_id=run.id if run else None,
            model_base=model.base, model_path=model.path, data_time=run.data_time if run else records.now_iso(),
            data_order=run.order if run else None, metric=run.metrics.get(self.gate.primary) if run else None,
            metrics=self.gate.gated(run.metrics) if run else {}, trigger=trigger)

    def begin_alone(self, attempt: Deployment, owner: str) -> LeasedAttempt | EndpointResult:
        """Begin one endpoint (waiting for a held lease); an EndpointResult when there is nothing to do: the lease
        stayed busy, or this attempt finished before (a redelivery)."""
        try:
            begun = wait_for_lease(lambda: self.ledger.begin(attempt, owner, self.settings.lease_seconds))
        except LeaseBusy:
            return EndpointResult(attempt.endpoint, "Pending", "another deployment holds the endpoint", attempt.id)
        if begun.lease is None:
            return EndpointResult(attempt.endpoint, begun.dep.outcome, begun.dep.reason, begun.dep.id)
        return begun

    def deploy(self, target: Target, endpoint: str, model: ModelRef, run: Run | None, operation: Operation,
               force: bool, trigger: str, dep_id: str | None = None) -> EndpointResult:
        """Deploy to one endpoint: lease + attempt, put in service, verify (roll back on failure), outcome +
        pointer."""
        if endpoint == self.services.serving(target).protected_endpoint():
            return EndpointResult(endpoint, "Refused", "the default endpoint is never patched")
        owner = uuid.uuid4().hex
        begun = self.begin_alone(self.new_attempt(target, endpoint, model, run, operation, trigger, dep_id), owner)
        if isinstance(begun, EndpointResult):
            return begun
        dep = carry_out_and_record(self, target, model, run, force, begun, owner)
        return EndpointResult(endpoint, dep.outcome, dep.reason, dep.id)

    def renew_lease(self, cur: Current) -> None:
        """Renew our lease on an endpoint once half of it is gone; LeaseBusy when it is no longer ours."""
        if cur.lease_until - time.time() < self.settings.lease_seconds / 2:
            self.ledger.renew(cur, str(cur.lease_owner), self.settings.lease_seconds)

    def carry_out(self, target: Target, model: ModelRef, run: Run | None, force: bool,
                  begun: LeasedAttempt) -> Deployment:
        """The service side of one endpoint's deployment (under its lease, renewed as it goes); returns the attempt
        with its outcome."""
        started = time.monotonic()
        dep = begun.dep
        assert begun.lease is not None
        try:
            self.renew_lease(begun.lease)
            dep.outcome, dep.reason = self._swap(target, model, run, force, dep, begun.lease)
        except LeaseBusy:
            dep.outcome, dep.reason = "Pending", "the endpoint's lease was lost (this invocation was too slow); " \
                                                "another one finishes the deployment"
        except Exception as exc:
            dep.outcome, dep.reason = "Failed", f"unexpected error: {type(exc).__name__}"
            log.exception("deployment %s to %s failed", dep.id, dep.endpoint)
        dep.duration_ms = int((time.monotonic() - started) * 1000)
        return dep

    def smoke_row(self, target: Target, run: Run | None) -> dict[str, str] | None:
        return smoke_row_for(self.settings, self.ledger, target, run)

    def _swap(self, target: Target, model: ModelRef, run: Run | None, force: bool, dep: Deployment,
              cur: Current) -> tuple[Outcome, str | None]:
        put = self.put_step(target, model, run, force, dep, cur)
        if not isinstance(put, InService):
            return put
        before, row = put.before, put.row
        verdict = self.services.serving(target).verify(dep.endpoint, model, row, before,
                                                       lambda: self.renew_lease(cur))
        return self.conclude(target, dep, cur, verdict, before, row)

    def put_step(self, target: Target, model: ModelRef, run: Run | None, force: bool, dep: Deployment,
                 cur: Current) -> tuple[Outcome, str | None] | InService:
        """Up to the model put in service: (what served before, the smoke row) - or the outcome when it ends here
        (superseded, not an improvement, the service did not take it)."""
        endpoint, subject = dep.endpoint, f"{target.name}/{dep.endpoint}"
        if (moved := decided_on_other(dep, cur)) is not None:
            return "Superseded", moved
        if dep.operation == "promote" and run is not None:
            newer = superseded_by(run, cur)
            if newer is not None:
                return "Superseded", newer
            now_serving = cur.metrics or ({self.gate.primary: cur.metric} if cur.metric is not None else {})
            weaker = None if force else self.gate.improvement(dep.metrics, now_serving)
            if weaker is not None:
                self.events.publish(ModelRejected(subject=subject, run_id=dep.run_id, endpoint=endpoint,
                                                  model=dep.model_path, code="NoImprovement", reason=weaker))
                return "Rejected", weaker
        serving = self.services.serving(target)
        row = self.smoke_row(target, run)
        try:
            observed = serving.observe(endpoint, row)
            # a rollback goes back to a deployment that served: it is part of what served before, never tidied away
            before = observed if dep.restores is not None else serving.baseline(endpoint, model, observed)
            if cur.deployment_id is None and before.endpoint.model_path:
                adopt(self.ledger, target, before.endpoint, cur)
            serving.put_in_service(endpoint, model, lambda: self.renew_lease(cur))
        except ServiceError as exc:
            return put_failed(self.events, subject, dep, exc, self.throttled)
        return InService(before, row)

    def conclude(self, target: Target, dep: Deployment, cur: Current, verdict: Verdict, before: Observed,
                 row: dict[str, str] | None) -> tuple[Outcome, str | None]:
        """The outcome of a decided verification: the pointer moved (on `cur`) and announced, or the old model put
        back (when that helps), or left open to be tried again."""
        endpoint, subject = dep.endpoint, f"{target.name}/{dep.endpoint}"
        serving = self.services.serving(target)
        if verdict.not_taken is not None:  # nothing was switched: what it left is tidied, the outcome a put's
            tidied = serving.restore(endpoint, before, row, lambda: self.renew_lease(cur))
            if tidied is not None:
                log.warning("what the refused deployment %s to %s left could not be tidied: %s", dep.id, endpoint,
                            tidied)
            return put_failed(self.events, subject, dep, verdict.not_taken, self.throttled)
        if not verdict.ok and before.failing and not (dep.reason or "").endswith(CHECKED_AGAIN):
            # What it replaces did not answer either (a model that cannot load, still switching out): putting that
            # back helps nobody. Unproven: the attempt stays open and is checked again - once; failing again, it
            # is rolled back as any other (so it converges).
            problem = f"{verdict.problem}; the model it replaces did not answer either{CHECKED_AGAIN}"
            self.events.publish(EndpointUpdateFailed(subject=subject, run_id=dep.run_id, endpoint=endpoint,
                                                     model=dep.model_path, reason=problem, will_retry=True))
            return "Pending", problem
        if not verdict.ok:
            problem = str(verdict.problem)
            rolled = serving.restore(endpoint, before, row, lambda: self.renew_lease(cur))
            self.events.publish(EndpointUpdateFailed(subject=subject, run_id=dep.run_id, endpoint=endpoint,
                                                     model=dep.model_path, reason=problem,
                                                     will_retry=verdict.transient))
            self.events.publish(EndpointRolledBack(subject=subject, run_id=dep.run_id, endpoint=endpoint,
                                                   failed_model=dep.model_path, restored_model=cur.model_path,
                                                   restored=rolled is None, reason=problem))
            reason = problem + ("" if rolled is None else f"; the rollback also failed: {rolled}")
            if verdict.transient:  # unproven, not wrong: the old model serves again and the attempt stays open
                return "Pending", f"{reason}; the previous model serves again and the deployment will be retried"
            return "RolledBack", reason
        failpoints.reached("after-patch")  # verified on the service, not yet in the ledger
        previous = cur.model_path
        cur.serve(dep)
        self.events.publish(  # sent only once the ledger took the change (`record_outcomes`)
            EndpointUpdated(subject=subject, run_id=dep.run_id, endpoint=endpoint, target=target.name,
                            model=dep.model_path, metrics=dep.metrics, operation=dep.operation, deployment_id=dep.id,
                            sequence=cur.sequence, previous_model=previous, data_time=dep.data_time))
        if dep.restores is not None:  # an operator's rollback, announced as such whoever finishes it (reconcile too)
            self.events.publish(EndpointRolledBack(subject=subject, run_id=dep.run_id, endpoint=endpoint,
                                                   restored_model=dep.model_path, to_deployment=dep.restores,
                                                   deployment_id=dep.id))
        return "Deployed", None


def hand_off(ledger: Ledger, to_queue: Callable[[str], object], dep: Deployment, run: Run, cur: Current,
             owner: str) -> None:
    """An operator's action decided under the lease, carried out by the work queue: applied there only while the
    endpoint still serves what it was decided on (`decided_on`); a queue that does not take it fails it at once."""
    dep.decided_on = cur.deployment_id or "-"
    ledger.save_deployment(dep)
    ledger.release(cur, owner)  # the queue's deploy message takes it, and the stored attempt
    try:
        to_queue(run.id)
    except Exception as exc:  # not queued: nothing was changed, and nothing will be - say so, truthfully
        not_handed_off(ledger, dep, run, exc)
        raise


def smoke_row_for(settings: Settings, ledger: Ledger, target: Target, run: Run | None) -> dict[str, str] | None:
    """The row to score: the run's own first data row, the configured one, or a recent run's."""
    row = (run.smoke_row if run else None) or settings.smoke_row
    if row:
        return {str(k): str(v) for k, v in row.items()}
    for recent in ledger.list_runs(("Deployed", "Trained", "Deploying", "Training"), limit=20):
        if recent.target == target.name and recent.smoke_row:
            return recent.smoke_row
    return None


def queued_proof(s: Settings, serving: ServingTarget) -> bool:
    return proven_on_queue(s.fanout_mode, serving.proves_later, serving.proof_seconds(s.verify_switch_seconds,
                                                                                      s.verify_poll_seconds))
