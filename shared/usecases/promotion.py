"""Promoting a run's model: wait for its job to end, apply the gate, then deploy to every endpoint the run routes
to (concurrently, bounded) and record what that adds up to: Deployed, PartiallyDeployed, RolledBack, Superseded,
Failed - or still Deploying while an endpoint is pending. A model below the gate ends the run as BelowGate, and
is recorded as rejected on each of its endpoints."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from shared.decisions import ACTIVE_RUN_STATUSES, final_status, model_refused
from shared.errors import RunMoved
from shared.events import ModelRejected, RunAwaitingApproval
from shared.gate import Gate
from shared.logs import context
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.ports.serving import ModelRef
from shared.records import MAX_ENDPOINT_RESULTS, Deployment, EndpointResult, PromoteResult, Run
from shared.settings import Settings, Target
from shared.usecases.fanout import FanOut
from shared.usecases.superseding import supersede
from shared.usecases.training import TrainingJobs
from shared.usecases.watch_start import start_watch

ENDED_JOB_STATUSES = ("Completed", "Failed", "Canceled", "Finished", "Cancelled")


@dataclass
class Promotion:
    """A run's trained model to its endpoints, through the gate."""

    settings: Settings
    ledger: Ledger
    services: Services
    events: EventSink
    jobs: TrainingJobs
    fanout: FanOut
    gate: Gate

    def promote(self, run: Run, force: bool = False, unservable_is_rejection: bool = False) -> PromoteResult:
        """Gate, then deploy the run's model to every endpoint it routes to. `unservable_is_rejection`: a model
        no endpoint could serve ends the run Rejected (a hand-dropped file) rather than RolledBack/Failed."""
        with context(run=run.id):
            try:
                return self._promote(run, force, unservable_is_rejection)
            except RunMoved:  # another invocation moved the run on meanwhile: it says how it ended
                done = run.status not in ACTIVE_RUN_STATUSES
                return PromoteResult(run.id, "Done" if done else "Pending", reason=run.error or f"the run is "
                                     f"{run.status}")

    def on_job_event(self, job_id: str, status: str | None = None) -> PromoteResult | None:
        """A training service said a job changed (`status`, when it said): when it ended, its run goes on - gate,
        deployment - as when its model landed. None for a job of no run of this app, or one still running."""
        if status is not None and status not in ENDED_JOB_STATUSES:
            return None
        for target in self.settings.targets:
            run_id = self.services.training(target).run_of(job_id)
            run = self.ledger.get_run(run_id) if run_id else None
            if run is not None and run.job_id == job_id:
                return self.promote(run)
        return None

    def _promote(self, run: Run, force: bool, unservable_is_rejection: bool) -> PromoteResult:
        target = self.settings.target(run.target)
        if run.kind == "bes":
            if run.job_id is None:
                return PromoteResult(run.id, "Pending", reason="the job has not been submitted yet")
            if run.status in ("Failed", "Cancelled", "Rejected", "Superseded"):
                return PromoteResult(run.id, "Failed", reason=run.error)
            state = self.jobs.wait(run)
            if state.phase in ("Failed", "Cancelled"):
                self.jobs.ended(run, state)
                return PromoteResult(run.id, "Failed", reason=run.error)
            if state.phase != "Finished":
                return PromoteResult(run.id, "Pending", reason=f"the job is {state.phase}")
            self.jobs.finished(run, state)
            model = self.jobs.model(run)
        else:
            model = ModelRef(run.model_path or "", run.model_base)
        if not force:
            reason = self.gate.check(run.metrics)
            if reason is not None:
                return self._below_gate(run, target, reason)
        if run.status == "Trained" and run.kind == "bes" and self.settings.approval == "manual" and not force:
            return self._await_approval(run, target)
        if run.status == "AwaitingApproval":
            return PromoteResult(run.id, "Pending", reason="the run awaits an operator's approval")
        if run.status == "Trained":
            self.ledger.change(run, "Deploying")
        results = self.fanout.deploy(target, self.services.resolve(target, run.endpoints), model, run, force,
                                     run.trigger)
        self._record(run, results, unservable_is_rejection)
        done: Literal["Pending", "Done"] = "Pending" if run.status == "Deploying" else "Done"
        return PromoteResult(run.id, done, results, reason=run.error)

    def _record(self, run: Run, results: list[EndpointResult], unservable_is_rejection: bool) -> None:
        """The per-endpoint outcomes on the run, and the status they add up to (once, when final)."""
        failed_first = sorted(results, key=lambda r: r.outcome in ("Deployed", "Unchanged"))
        recorded: dict[str, Any] = {"outcomes": dict(Counter(r.outcome for r in results)),
                    "endpoint_results": [{"endpoint": r.endpoint, "outcome": r.outcome, "reason": r.reason,
                                          "deploymentId": r.deployment_id}
                                         for r in failed_first[:MAX_ENDPOINT_RESULTS]]}
        if run.status not in ACTIVE_RUN_STATUSES:
            self.ledger.change(run, **recorded)  # a redelivery of a finished run: nothing changes state
            return
        final = final_status(results)
        problems = sorted({f"{r.outcome}: {r.reason}" for r in results if r.reason and r.outcome not in (
            "Deployed", "Unchanged")})
        reason = "; ".join(problems)[:2000] or None
        if unservable_is_rejection and results and all(model_refused(r) for r in results):
            final, reason = "Rejected", f"ModelNotServable: no endpoint could serve the model: {reason}"
        if final == "Deploying":
            self.ledger.change(run, **recorded)
        else:
            self.ledger.change(run, final, reason if final != "Deployed" else None, **recorded)
        if final in ("Deployed", "PartiallyDeployed"):
            start_watch(self.settings, self.ledger, run)

    def _await_approval(self, run: Run, target: Target) -> PromoteResult:
        """Wait for an operator, showing the new model's metric beside each endpoint's serving one. Of runs for the
        same endpoints waiting at once, only the one on the newest data waits on: the others are superseded."""
        serving = []
        for ep in self.services.resolve(target, run.endpoints)[:MAX_ENDPOINT_RESULTS]:
            cur = self.ledger.current(target.name, ep)
            serving.append({"endpoint": ep, "outcome": "AwaitingApproval", "servingModel": cur.model_path if cur
                            else None, "servingMetric": str(cur.metric) if cur and cur.metric is not None else None,
                            "servingMetrics": json.dumps(cur.metrics) if cur and cur.metrics else None})
        waiting = [r for r in self.ledger.list_runs(("AwaitingApproval",), limit=1000)
                   if r.id != run.id and r.target == run.target and r.endpoints == run.endpoints]
        newer = [r for r in waiting if r.order > run.order]
        if newer:
            supersede(self.ledger, self.events, run, newer[0].id, "a run on newer data awaits approval")
            return PromoteResult(run.id, "Failed", reason=run.error)
        self.ledger.change(run, "AwaitingApproval", endpoint_results=serving,
                           note="waiting for an operator: POST /api/runs/<id>/approve or /reject")
        self.events.publish(RunAwaitingApproval(subject=run.model_path or run.id, run_id=run.id,
                                                metrics=self.gate.gated(run.metrics), endpoints=serving))
        for older in waiting:
            supersede(self.ledger, self.events, older, run.id, "a run on newer data awaits approval")
        return PromoteResult(run.id, "Pending", reason="the run awaits an operator's approval")

    def _below_gate(self, run: Run, target: Target, reason: str) -> PromoteResult:
        if run.status == "Trained":
            endpoints = run.endpoints if run.endpoints != ["*"] else []
            self.ledger.change(run, "BelowGate", f"BelowGate: {reason}",
                               outcomes={"Rejected": len(endpoints)} if endpoints else {},
                               endpoint_results=[{"endpoint": ep, "outcome": "Rejected", "reason": reason,
                                                  "deploymentId": f"run-{run.id}"}
                                                 for ep in endpoints[:MAX_ENDPOINT_RESULTS]])
            self.events.publish(ModelRejected(subject=run.model_path or run.id, run_id=run.id, model=run.model_path,
                                              code="BelowGate", reason=reason, endpoints=run.endpoints,
                                              metrics=self.gate.gated(run.metrics)))
            for ep in endpoints:
                self.ledger.add_deployment(Deployment(
                    id=f"run-{run.id}", target=target.name, endpoint=ep, outcome="Rejected", run_id=run.id,
                    model_path=run.model_path, data_time=run.data_time, metric=run.metrics.get(self.gate.primary),
                    metrics=self.gate.gated(run.metrics), reason=reason,
                    trigger=run.trigger))
        return PromoteResult(run.id, "Rejected", reason=reason)
