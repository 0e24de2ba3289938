"""Watching a deployment after it went live: a verified model may still stop serving (the real service's switch
takes longer than verification waited, or the model fails under real requests). For RETRAIN_WATCH_MINUTES after a
run (or an operator's action) is Deployed, every reconcile pass checks each endpoint whose pointer still names that
deployment, and rolls back one that stopped answering with the model. A watch is recorded work: it survives a
restart, and ends by itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.errors import NotFound, Refused, ServiceError, describe
from shared.events import EndpointUpdateFailed
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.ports.serving import ModelRef
from shared.records import Current, Watch, now_iso
from shared.settings import Settings
from shared.usecases.operations import Operations

log = logging.getLogger("shared.usecases.watch")


@dataclass
class Watching:
    settings: Settings
    ledger: Ledger
    services: Services
    events: EventSink
    operations: Operations

    def check_all(self) -> dict[str, int]:
        """One look at every watched deployment; a watch past its time, or whose deployment nothing serves any
        more, ends."""
        summary = {"watched": 0, "rolledBack": 0, "ended": 0}
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
            for endpoint in endpoints:
                summary["watched"] += 1
                if self._check(watch, endpoint):
                    summary["rolledBack"] += 1
        return summary

    def _check(self, watch: Watch, endpoint: str) -> bool:
        """Check one endpoint; True when it stopped serving and was rolled back."""
        row = watch.smoke_row or self.settings.smoke_row
        smoke = {str(k): str(v) for k, v in row.items()} if row else None
        try:
            verdict = self.services.serving(watch.target).check(endpoint, ModelRef(str(watch.model_path),
                                                                                   watch.model_base), smoke)
        except ServiceError as exc:
            log.info("watch of %s on %s: the check could not be made (%s)", watch.id, endpoint, describe(exc))
            return False
        if verdict.ok or verdict.transient:
            return False
        problem = f"it stopped serving during its watch: {verdict.problem}"
        log.warning("endpoint %s: %s %s; rolling back", endpoint, watch.model_path, problem)
        attempt = self.ledger.get_deployment(watch.target, endpoint, watch.id)
        if attempt is not None:
            attempt.outcome, attempt.reason = "RolledBack", problem
            self.ledger.save_deployment(attempt)
        self.events.publish(EndpointUpdateFailed(subject=f"{watch.target}/{endpoint}", run_id=watch.run_id,
                                                 endpoint=endpoint, model=watch.model_path, reason=problem,
                                                 will_retry=False))
        try:
            self.operations.rollback(watch.target, endpoint, trigger="watch", caller="watch")
        except (Refused, NotFound) as exc:
            log.error("endpoint %s serves a failing model and cannot be rolled back: %s", endpoint, exc)
            return False
        self._record_on_run(watch, problem)
        return True

    def _record_on_run(self, watch: Watch, problem: str) -> None:
        run = self.ledger.get_run(watch.run_id) if watch.run_id else None
        if run is not None and run.status in ("Deployed", "PartiallyDeployed"):
            self.ledger.change(run, "RolledBack", f"RolledBack: {problem}")
