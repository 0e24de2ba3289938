"""Recording deployments' outcomes and pointers, and announcing them: the one place an `EndpointUpdated` meets the
ledger. The events are stored first (an outbox row: a crash after the ledger write cannot lose them), the outcomes
and pointers written, and only then sent - without the `EndpointUpdated` of an endpoint whose pointer write the
ledger refused (its lease was taken over meanwhile). So an endpoint's `EndpointUpdated` announces a pointer change
the ledger made, once, and its `sequence` orders it among the endpoint's others. Also the other records of how an
attempt ends: a put the service refused (`put_failed`), an operator's action the work queue did not take
(`not_handed_off`), and the baseline of an endpoint the app did not create (`adopt`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from shared.decisions import MODEL_REFUSED
from shared.errors import ServiceError, describe
from shared.events import EndpointUpdateFailed
from shared.ports.events import EventBatch, EventSink
from shared.ports.ledger import BATCH_ENDPOINTS, LeasedAttempt, Ledger
from shared.ports.serving import EndpointInfo, ModelRef
from shared.records import ADOPTED, Current, Deployment, Outcome, Run, now_iso
from shared.settings import Target


class Deployer(Protocol):
    """What `carry_out_and_record` asks of `EndpointDeployer` (which imports this module)."""

    ledger: Ledger
    events: EventSink

    def carry_out(self, target: Target, model: ModelRef, run: Run | None, force: bool,
                  begun: LeasedAttempt) -> Deployment: ...

log = logging.getLogger("shared.usecases.outcomes")
ANNOUNCING = ("EndpointUpdated", "EndpointRolledBack")  # the events that announce a pointer change (a rollback: both)
LOST = ("the endpoint's lease was taken over before its pointer was recorded; the deployment is decided again "
        "(newest data wins)")


def record_outcomes(ledger: Ledger, events: EventBatch, done: list[tuple[Deployment, Current]],
                    owner: str) -> list[Deployment]:
    """Outcomes + pointers of finished endpoints (BATCH_ENDPOINTS together) between storing and sending the events
    gathered in `events`. Returns the attempts whose lease was taken over: their announcement withdrawn, and one
    that was Deployed is recorded Pending unless the pointer names it (a redelivery of the same attempt finished
    it, and announced it) - a model is Deployed only with its pointer, and the next promotion decides it again
    against whatever serves now."""
    stored = events.store({f"{dep.target}/{dep.endpoint}" for dep, _ in done})  # these outcomes' own, no others'
    lost: list[Deployment] = []
    for i in range(0, len(done), BATCH_ENDPOINTS):
        lost += ledger.finish_many(done[i:i + BATCH_ENDPOINTS], owner)
    refused: set[tuple[str, str]] = set()
    for dep in lost:
        log.warning("the lease on %s was taken over while deploying %s", dep.endpoint, dep.id)
        refused.add((f"{dep.target}/{dep.endpoint}", dep.id))
        if dep.outcome != "Deployed":
            continue
        now = ledger.current(dep.target, dep.endpoint)
        if now is None or now.deployment_id != dep.id:
            dep.outcome, dep.reason = "Pending", LOST
            ledger.save_deployment(dep)
    if refused:
        stored = events.withdraw(stored, lambda kind, subject, data: kind in ANNOUNCING and (
            subject, data.get("deploymentId")) in refused)
    events.send(stored)
    return lost


def announcement_recorded(ledger: Ledger, kind: str, subject: str, data: Any) -> bool:
    """Whether an event a writer stored and never finished with (it died between storing and sending, or could not
    take an announcement back) may still be sent: an announcement of a deployment only when the ledger records that
    deployment Deployed at the announced sequence; every other event, yes."""
    deployment = data.get("deploymentId") if isinstance(data, dict) else None
    if kind not in ANNOUNCING or not deployment:
        return True
    target, _, endpoint = subject.partition("/")
    try:
        found = ledger.get_deployment(target, endpoint, str(deployment))
    except Exception:  # unknown now: kept for the next flush rather than sent unconfirmed or dropped
        log.exception("could not confirm an announcement of %s on %s; the next flush tries again", deployment, subject)
        raise
    # the same attempt may have gone live since under another sequence (a retry): only that announcement is true
    sequence = data.get("sequence")
    return found is not None and found.outcome == "Deployed" and (sequence is None or found.sequence is None or
                                                                  found.sequence == sequence)


def carry_out_and_record(deployer: Deployer, target: Target, model: ModelRef, run: Run | None, force: bool,
                         begun: LeasedAttempt, owner: str) -> Deployment:
    """One endpoint's deployment (`EndpointDeployer.carry_out`, under the lease `begun` holds), then its outcome
    and pointer recorded and announced as above."""
    events, lease = deployer.events.batch(), begun.lease
    with events.gathering():
        dep = deployer.carry_out(target, model, run, force, begun)
    assert lease is not None
    record_outcomes(deployer.ledger, events, [(dep, lease)], owner)
    return dep


def not_handed_off(ledger: Ledger, dep: Deployment, run: Run, exc: Exception) -> None:
    """An operator's action the work queue did not take: its attempt and run end Failed (nothing was changed on
    the service), so neither a later reconcile nor a late message carries it out behind the caller's error."""
    reason = f"the action could not be queued ({describe(exc)}); nothing was changed - try again"
    dep.outcome, dep.reason = "Failed", reason
    ledger.save_deployment(dep)
    stored = ledger.get_run(run.id)
    if stored is not None and stored.status == "Deploying":
        ledger.change(stored, "Failed", reason, release_claim=True, finished_at=now_iso())


def put_failed(events: EventSink, subject: str, dep: Deployment, exc: ServiceError,
               throttled: Callable[[str, float | None], None] | None = None) -> tuple[Outcome, str]:
    """A model the service refused (the model's fault: final) or a call that did not get through (retried); a
    429 tells `throttled` (every instance holds off)."""
    if throttled is not None and exc.throttling:
        throttled(dep.target, exc.retry_after)
    if exc.input_refused:
        outcome: Outcome = "Failed"
        reason = f"{MODEL_REFUSED}: {describe(exc)}"
    elif exc.transient:
        outcome, reason = "Pending", f"the model could not be put in service now ({describe(exc)}); it will be " \
                                     "retried"
    else:
        outcome, reason = "Failed", f"the service did not take the model: {describe(exc)}"
    events.publish(EndpointUpdateFailed(subject=subject, run_id=dep.run_id, endpoint=dep.endpoint,
                                        model=dep.model_path, reason=reason, will_retry=outcome == "Pending"))
    return outcome, reason


def adopt(ledger: Ledger, target: Target, found: EndpointInfo, cur: Current) -> Deployment:
    """Record what an endpoint the app did not create serves as its baseline ("adopted"), before the app first
    changes it, so a rollback can return to it; `cur` (held under the endpoint's lease) points at it."""
    baseline = Deployment(id=ADOPTED, target=target.name, endpoint=found.name, operation="adopt",
                          outcome="Created", model_base=found.model_base, model_path=found.model_path,
                          trigger="adopt", reason="served before the app managed the endpoint",
                          created_at="1970-01-01T00:00:00.000Z")  # older than anything the app did there
    stored, _ = ledger.add_deployment(baseline)
    cur.serve(stored)
    log.info("adopted endpoint %s serving %s", found.name, found.model_path)
    return stored
