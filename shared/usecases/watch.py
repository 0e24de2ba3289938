"""Watching a deployment after it went live: a verified model may still stop serving (the real service's switch
takes longer than verification waited, or the model fails under real requests). For RETRAIN_WATCH_MINUTES after a
run (or an operator's action) is Deployed, every reconcile pass checks each endpoint whose pointer still names that
deployment, and rolls back one that stopped answering with the model. A watch is recorded work: it survives a
restart, and ends by itself. A deployment watched on many endpoints (`decisions.watch_over_queue`) is checked
through `watch` messages of BATCH_ENDPOINTS endpoints on the work queue (any instance takes one: `check_batch`)
rather than one after another in the reconcile pass. A check is safe twice: only an endpoint whose pointer still
names the watched deployment is rolled back, decided under its lease (`Operations.rollback(only_from=...)`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from shared.decisions import watch_over_queue
from shared.errors import NotFound, Refused, ServiceError, describe
from shared.events import EndpointUpdateFailed
from shared.ports.events import EventSink
from shared.ports.ledger import BATCH_ENDPOINTS, Ledger
from shared.ports.queues import WorkQueue
from shared.ports.services import Services
from shared.ports.serving import ModelRef
from shared.records import Current, Watch, now_iso
from shared.settings import Settings
from shared.usecases.operations import Operations
from shared.usecases.pace import Pace

log = logging.getLogger("shared.usecases.watch")
Looked = Literal["fine", "throttled", "rolledBack"]


@dataclass
class Watching:
    settings: Settings
    ledger: Ledger
    services: Services
    events: EventSink
    operations: Operations
    queue: WorkQueue | None = None  # where the checks of a widely served deployment go (None: all in place)
    pace: Pace | None = None  # the queued fan-out's: a throttled check holds every instance off

    def check_all(self) -> dict[str, int]:
        """One look at every watched deployment (or, for one served by many endpoints, its looks sent as `watch`
        messages); a watch past its time, or whose deployment nothing serves any more, ends."""
        summary = {"watched": 0, "rolledBack": 0, "ended": 0, "watchQueued": 0}
        now = now_iso()
        pointers: dict[str, dict[str, Current]] = {}
        for watch in self.ledger.watches():
            if watch.until <= now:
                self.ledger.end_watch(watch)
                summary["ended"] += 1
                continue
            if watch.target not in pointers:
                pointers[watch.target] = self.ledger.currents(watch.target)
            endpoints = sorted(e for e, c in pointers[watch.target].items() if c.deployment_id == watch.id)
            if not endpoints:  # replaced or rolled back since: nothing left to watch
                self.ledger.end_watch(watch)
                summary["ended"] += 1
                continue
            if self.queue is not None and watch_over_queue(self.settings.fanout_mode, len(endpoints),
                                                           self.settings.patch_concurrency):
                for i in range(0, len(endpoints), BATCH_ENDPOINTS):
                    self.queue.send({"kind": "watch", "watch": watch.model_dump(mode="json"),
                                     "endpoints": endpoints[i:i + BATCH_ENDPOINTS]})
                summary["watchQueued"] += len(endpoints)
                continue
            for endpoint in endpoints:
                summary["watched"] += 1
                looked = self._check(watch, endpoint)
                if looked == "throttled":
                    break  # the next pass looks again
                if looked == "rolledBack":
                    summary["rolledBack"] += 1
        return summary

    def check_batch(self, body: dict[str, Any]) -> int:
        """A `watch` message: one look at each of its endpoints that still serves the watched deployment (a watch
        over, or an endpoint moved on since, is left alone); the number rolled back."""
        watch = Watch.model_validate(body["watch"])
        endpoints = sorted(str(e) for e in body["endpoints"])
        if not endpoints or watch.until <= now_iso():
            return 0
        pointers = self.ledger.currents(watch.target, endpoints[0], endpoints[-1])
        serving = [e for e in endpoints if (c := pointers.get(e)) is not None and c.deployment_id == watch.id]
        rolled = 0
        for i, endpoint in enumerate(serving):
            looked = self._check(watch, endpoint)
            if looked == "throttled":  # the rest after the pause every instance now holds
                if self.queue is not None:
                    wait = self.pace.paused(watch.target) if self.pace is not None else 0.0
                    self.queue.send({**body, "endpoints": serving[i:]}, max(wait, self.settings.verify_poll_seconds))
                break
            rolled += looked == "rolledBack"
        return rolled

    def _check(self, watch: Watch, endpoint: str) -> Looked:
        """Check one endpoint: it still serves (or could not be checked now), it was throttled (the shared pause
        is set), or it stopped serving and was rolled back."""
        row = watch.smoke_row or self.settings.smoke_row
        smoke = {str(k): str(v) for k, v in row.items()} if row else None
        try:
            verdict = self.services.serving(watch.target).check(endpoint, ModelRef(str(watch.model_path),
                                                                                   watch.model_base), smoke)
        except ServiceError as exc:
            log.info("watch of %s on %s: the check could not be made (%s)", watch.id, endpoint, describe(exc))
            return "fine"
        if verdict.throttle is not None:
            log.info("watch of %s on %s: throttled (%s)", watch.id, endpoint, describe(verdict.throttle))
            if self.pace is not None:
                self.pace.throttled(watch.target, verdict.throttle.retry_after)
            return "throttled"
        if verdict.ok or verdict.transient:
            return "fine"
        problem = f"it stopped serving during its watch: {verdict.problem}"
        cur = self.ledger.current(watch.target, endpoint)
        if cur is None or cur.deployment_id != watch.id:
            return "fine"  # moved on since it was listed (rolled back by this check delivered before, replaced)
        log.warning("endpoint %s: %s %s; rolling back", endpoint, watch.model_path, problem)
        attempt = self.ledger.get_deployment(watch.target, endpoint, watch.id)
        if attempt is not None and attempt.outcome != "RolledBack":
            attempt.outcome, attempt.reason = "RolledBack", problem
            self.ledger.save_deployment(attempt)
            self.events.publish(EndpointUpdateFailed(subject=f"{watch.target}/{endpoint}", run_id=watch.run_id,
                                                     endpoint=endpoint, model=watch.model_path, reason=problem,
                                                     will_retry=False))
        try:
            result = self.operations.rollback(watch.target, endpoint, trigger="watch", caller="watch",
                                              only_from=watch.id)
        except (Refused, NotFound) as exc:
            log.error("endpoint %s serves a failing model and cannot be rolled back: %s", endpoint, exc)
            return "fine"
        if result.outcome == "Unchanged":
            return "fine"  # another delivery of this check rolled it back meanwhile (decided under the lease)
        self._record_on_run(watch, problem)
        return "rolledBack"

    def _record_on_run(self, watch: Watch, problem: str) -> None:
        run = self.ledger.get_run(watch.run_id) if watch.run_id else None
        if run is not None and run.status in ("Deployed", "PartiallyDeployed"):
            self.ledger.change(run, "RolledBack", f"RolledBack: {problem}")
