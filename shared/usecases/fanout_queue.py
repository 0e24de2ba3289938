"""A fan-out spread over queue messages (RETRAIN_FANOUT_MODE=queue): waiting is not work.

`dispatch` splits the endpoints into batches of BATCH_ENDPOINTS, one `deploy` message each, and claims the run
for the fan-out. A `deploy` message takes its endpoints' leases and attempts together (each lease long enough
for the switch), puts the model in service on each, and sends one `prove` message made visible after the switch
time (RETRAIN_VERIFY_SWITCH_SECONDS). A `prove` message looks once at each endpoint (`ServingTarget.verify_once`):
proven -> outcome + pointer; failed -> the old model back; not yet -> a `prove` message for those, due after
RETRAIN_VERIFY_POLL_SECONDS, within the verification's bound. Nothing sleeps through a switch, and any instance
takes any message (Flex Consumption scales out on the queue's length).

Safe to run twice or to die half-way: leases carry the fan-out's owner (a redelivered message re-takes its own
endpoints, another fan-out's are left alone), finished attempts are not begun again, and a `prove` message
whose endpoint is no longer leased by its owner does nothing. The run's end is a `tally` chain (`promote` called
again: the fan-out's endpoints are read from their pointers); when the run's claim runs out with endpoints not
finished (an instance died, a message was poisoned), the next `promote` - a tally or reconcile - dispatches them
again."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared import failpoints
from shared.errors import LeaseBusy, ServiceError, Stale, describe
from shared.ports.ledger import BATCH_ENDPOINTS, LeasedAttempt, Ledger
from shared.ports.queues import WorkQueue
from shared.ports.serving import EndpointInfo, ModelRef, Observed, Verdict
from shared.records import Current, Deployment, EndpointResult, Run
from shared.settings import Target
from shared.usecases.deployment import EndpointDeployer, InService
from shared.usecases.outcomes import record_outcomes
from shared.usecases.pace import Pace

log = logging.getLogger("shared.usecases.fanout_queue")
CLAIM = "fanout:"
TALLY_SECONDS = 3.0  # how often the end of a fan-out is looked for


def _model(body: dict[str, Any]) -> ModelRef:
    m = body["model"]
    return ModelRef(m["path"], m.get("base"), m.get("job"))


class QueuedFanOut:
    def __init__(self, deployer: EndpointDeployer, queue: WorkQueue, promote: Callable[[str], object]) -> None:
        self.deployer, self.queue, self.promote = deployer, queue, promote
        self.ledger, self.settings = deployer.ledger, deployer.settings
        self.pace = Pace(self.settings, queue)
        deployer.throttled = self.pace.throttled
        deployer.hand_off = promote  # an operator's action whose proof may outlast its call (`proven_on_queue`)
        self.watch: Callable[[dict[str, Any]], object] | None = None  # a `watch` message's checks (usecases.watch)
        self._executor: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ---- the fan-out's start, and its end --------------------------------------------------------------------
    def dispatch(self, target: Target, todo: list[str], model: ModelRef, run: Run, force: bool,
                 trigger: str) -> list[EndpointResult]:
        """Send the batches of endpoints not finished yet (none while the run's claim is live); the results so
        far (Pending for those still on their way)."""
        dep_id = f"run-{run.id}"
        claimed = (run.claimed_by or "").startswith(CLAIM)
        if claimed and run.claimed_until > self.queue.now():
            done = progress(self.ledger, target, todo, dep_id, thorough=False)
            return [done.get(ep) or EndpointResult(ep, "Pending", "in a queued batch", dep_id) for ep in todo]
        done = progress(self.ledger, target, todo, dep_id, thorough=True) if claimed else {}
        left = [ep for ep in todo if ep not in done]
        if not left:
            return [done[ep] for ep in todo]
        owner = uuid.uuid4().hex
        s = self.settings
        proof = self.deployer.services.serving(target).proof_seconds(s.verify_switch_seconds, s.verify_poll_seconds)
        bound = proof + s.verify_poll_seconds + 3 * s.lease_seconds + 0.05 * len(left)
        try:
            self.ledger.change(run, if_unchanged=True, claimed_by=CLAIM + owner, claimed_until=self.queue.now() + bound)
        except Stale:  # another invocation dispatched it meanwhile
            return [EndpointResult(ep, "Pending", "in a queued batch", dep_id) for ep in todo]
        common = {"run": run.id, "target": target.name, "owner": owner, "force": force, "trigger": trigger,
                  "model": {"path": model.path, "base": model.base, "job": model.job_id}}
        for i in range(0, len(left), BATCH_ENDPOINTS):
            self.queue.send({"kind": "deploy", **common, "endpoints": left[i:i + BATCH_ENDPOINTS]})
        self.queue.send({"kind": "tally", "run": run.id, "owner": owner}, s.verify_switch_seconds + TALLY_SECONDS)
        log.info("run %s: %d endpoints in %d queued batches", run.id, len(left), -(-len(left) // BATCH_ENDPOINTS))
        return [done.get(ep) or EndpointResult(ep, "Pending", "in a queued batch", dep_id) for ep in todo]

    # ---- a message -------------------------------------------------------------------------------------------
    def handle(self, body: dict[str, Any]) -> None:
        """One queue message (at least once: safe to run twice)."""
        kind = body.get("kind")
        if kind == "tally":
            self._tally(body)
            return
        if kind == "watch":  # a batch of a watched deployment's checks (the post-deploy watch)
            wait = self.pace.paused(str(body["watch"]["target"]))
            if wait > 0:
                self.queue.send(body, wait)
            elif self.watch is not None:
                self.watch(body)
            return
        run = self.ledger.get_run(str(body["run"]))
        # A batch dispatched again under a new owner drops the old owner's batches; its proofs still run (the
        # endpoints they look at are leased by the old owner: nobody else finishes those).
        if run is None or run.status != "Deploying" or (kind != "prove" and run.claimed_by != CLAIM + body["owner"]):
            log.info("a %s message of run %s is no longer needed", kind, body.get("run"))
            return
        target = self.settings.target(str(body["target"]))
        wait = self.pace.paused(target.name)
        if wait > 0:  # the service throttled someone: every instance holds off
            self.queue.send(body, wait)
            return
        if kind == "deploy":
            self._deploy(body, run, target)
        elif kind == "prove":
            self._prove(body, run, target)
        else:
            log.warning("an unknown work message (%s) was dropped", kind)

    def _tally(self, body: dict[str, Any]) -> None:
        run = self.ledger.get_run(str(body["run"]))
        if run is None or run.status != "Deploying" or run.claimed_by != CLAIM + body["owner"]:
            return  # over, or dispatched again (that dispatch has its own tally)
        self.promote(run.id)
        run = self.ledger.get_run(run.id)
        if run is not None and run.status == "Deploying" and run.claimed_by == CLAIM + body["owner"]:
            self.queue.send(body, max(TALLY_SECONDS, self.settings.verify_poll_seconds))

    def _pool(self) -> ThreadPoolExecutor:
        """One pool for every message this instance runs at once (the host runs up to batchSize together): at most
        RETRAIN_PATCH_CONCURRENCY endpoints in flight per instance."""
        with self._pool_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.settings.patch_concurrency,
                                                    thread_name_prefix="fanout-work")
            return self._executor

    def _deploy(self, body: dict[str, Any], run: Run, target: Target) -> None:
        model, owner, endpoints = _model(body), str(body["owner"]), list(body["endpoints"])
        s = self.settings
        seconds = s.lease_seconds + s.verify_switch_seconds + 2 * s.verify_poll_seconds  # the switch included
        drafts = [self.deployer.new_attempt(target, ep, model, run, "promote", str(body["trigger"]))
                  for ep in endpoints]
        began, alone = (self.ledger.begin_many(drafts, owner, seconds, self.ledger.currents(
            target.name, endpoints[0], endpoints[-1])) if len(drafts) > 1 else ([], drafts))
        busy: list[str] = []
        for draft in alone:
            try:
                one = self.ledger.begin(draft, owner, seconds)
            except LeaseBusy:  # another deployment holds it: looked at again shortly, not left to the claim's end
                busy.append(draft.endpoint)
                continue
            if one.lease is not None:
                began.append(one)
        if busy:
            self.queue.send({**body, "endpoints": busy}, max(1.0, s.verify_poll_seconds))
        events = self.deployer.events.batch()
        serving = self.deployer.services.serving(target)

        def put(begun: LeasedAttempt) -> tuple[Deployment, Current] | dict[str, Any]:
            assert begun.lease is not None
            dep, cur = begun.dep, begun.lease
            self.pace.take(target.name, 3)
            try:
                with events.gathering():
                    step = self.deployer.put_step(target, model, run, bool(body["force"]), dep, cur)
            except Exception as exc:
                log.exception("deployment %s to %s failed", dep.id, dep.endpoint)
                step = ("Failed", f"unexpected error: {type(exc).__name__}")
            if isinstance(step, InService):
                return {"endpoint": dep.endpoint, "since": self.queue.now(), "answers": step.before.answers,
                        "failing": step.before.failing, "kept": serving.kept(step.before),
                        "created": dep.created_at, "prev": [cur.model_path, cur.model_base], **_carried(dep)}
            dep.outcome, dep.reason = step
            return dep, cur

        outcomes = list(self._pool().map(put, began))
        failpoints.reached("queue-mid-batch")  # put in service, nothing recorded, no proof scheduled
        record_outcomes(self.ledger, events, [o for o in outcomes if isinstance(o, tuple)], owner)
        waiting = [o for o in outcomes if isinstance(o, dict)]
        if waiting:
            self.queue.send({**{k: v for k, v in body.items() if k != "endpoints"}, "kind": "prove",
                             "items": waiting}, s.verify_switch_seconds)
        retry = [d.endpoint for d, _ in (o for o in outcomes if isinstance(o, tuple)) if d.outcome == "Pending"]
        wait = self.pace.paused(target.name)
        if retry and wait > 0:  # throttled: those go again once the service lets us
            self.queue.send({**body, "endpoints": retry}, wait)

    def _prove(self, body: dict[str, Any], run: Run, target: Target) -> None:
        model, owner, items = _model(body), str(body["owner"]), list(body["items"])
        s = self.settings
        names = sorted(i["endpoint"] for i in items)
        rows = self.ledger.currents(target.name, names[0], names[-1])
        row = self.deployer.smoke_row(target, run)
        serving = self.deployer.services.serving(target)
        events = self.deployer.events.batch()
        bound = serving.proof_seconds(s.verify_switch_seconds, s.verify_poll_seconds)

        def look(item: dict[str, Any]) -> tuple[Deployment, Current] | dict[str, Any] | None:
            ep, cur = item["endpoint"], rows.get(item["endpoint"])
            if cur is None or cur.lease_owner != owner or cur.deployment_id == f"run-{run.id}":
                return None  # finished already (a redelivery), or taken over
            dep = _recorded(self.deployer.new_attempt(target, ep, model, run, "promote", str(body["trigger"])), item)
            prev = ModelRef(item["prev"][0], item["prev"][1]) if item["prev"][0] else None
            answers = item["answers"]
            waited = self.queue.now() - float(item["since"])
            held = self.pace.paused(target.name)
            if held > 0:  # another look was throttled meanwhile: nobody calls the service until the pause ends
                self.ledger.renew(cur, owner, held + s.verify_poll_seconds + s.lease_seconds)
                return item
            self.pace.take(target.name, 2)
            light = Observed(EndpointInfo(ep, prev.path if prev else None, prev.base if prev else None), answers,
                             item.get("kept"), failing=bool(item.get("failing")))
            try:
                verdict = serving.verify_once(ep, model, row, light, waited)
            except ServiceError as exc:  # the look could not be made
                if exc.throttling:
                    self.pace.throttled(target.name, exc.retry_after)
                verdict = None if waited < bound else Verdict(f"the check could not be made: {describe(exc)}",
                                                              transient=True)
            if verdict is None and waited < bound:
                self.ledger.renew(cur, owner, self.pace.paused(target.name) + s.verify_poll_seconds +
                                  s.lease_seconds)
                return item
            verdict = verdict or Verdict(f"not proven within {bound:.0f} s", transient=True)
            before = light if verdict.ok else serving.recall(ep, prev, answers, item.get("kept"))
            before.failing = light.failing
            with events.gathering():
                dep.outcome, dep.reason = self.deployer.conclude(target, dep, cur, verdict, before, row)
            dep.duration_ms = int(waited * 1000)
            return dep, cur

        def safely(item: dict[str, Any]) -> tuple[Deployment, Current] | dict[str, Any] | None:
            try:
                return look(item)
            except LeaseBusy:
                return None
            except Exception:
                log.exception("the look at %s failed; it is tried again", item["endpoint"])
                return item

        outcomes = list(self._pool().map(safely, items))
        record_outcomes(self.ledger, events, [o for o in outcomes if isinstance(o, tuple)], owner)
        again = [o for o in outcomes if isinstance(o, dict)]
        if again:
            self.queue.send({**body, "items": again}, max(s.verify_poll_seconds, self.pace.paused(target.name)))


def _carried(dep: Deployment) -> dict[str, Any]:
    """What a proof must know of an attempt besides a run's promotion: an operator's action handed to the queue
    (`EndpointDeployer.hand_off`) is concluded as that action (a rollback announced as one)."""
    if dep.operation == "promote":
        return {}
    return {"attempt": {"operation": dep.operation, "restores": dep.restores, "caller": dep.caller,
                        "forced": dep.forced}}


def _recorded(dep: Deployment, item: dict[str, Any]) -> Deployment:
    """A proof's attempt as its deploy message began it (`_carried`)."""
    mine = item.get("attempt") or {}
    dep.created_at, dep.operation = item["created"], mine.get("operation", dep.operation)
    dep.restores, dep.caller, dep.forced = mine.get("restores"), mine.get("caller"), bool(mine.get("forced"))
    return dep


def progress(ledger: Ledger, target: Target, todo: list[str], dep_id: str,
             thorough: bool) -> dict[str, EndpointResult]:
    """The endpoints whose part of the fan-out is over, read from their pointers (and, for those the pointer
    does not name, their attempts). Not `thorough`: {} as soon as one endpoint is still being worked on."""
    if not todo:
        return {}
    rows, now = ledger.currents(target.name, todo[0], todo[-1]), time.time()
    done, unsure = {}, []
    for ep in todo:
        cur = rows.get(ep)
        if cur is not None and cur.deployment_id == dep_id:
            done[ep] = EndpointResult(ep, "Deployed", None, dep_id)
        elif cur is None or (cur.lease_owner and cur.lease_until > now):
            if not thorough:
                return {}
        else:
            unsure.append(ep)
    for ep in unsure:
        dep = ledger.get_deployment(target.name, ep, dep_id)
        if dep is not None and dep.outcome != "Pending":
            done[ep] = EndpointResult(ep, dep.outcome, dep.reason, dep_id)
        elif not thorough:
            return {}
    return done
