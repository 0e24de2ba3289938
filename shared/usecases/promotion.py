"""Promoting a run's model: wait for its job to end, apply the gate, then deploy to every endpoint the run routes
to (concurrently, bounded) and record what that adds up to: Deployed, PartiallyDeployed, RolledBack, Superseded,
Failed - or still Deploying while an endpoint is pending. A model below the gate ends the run as BelowGate, and
is recorded as rejected on each of its endpoints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.adapters.storage import Storage
from shared.adapters.studio import StudioClients
from shared.decisions import ACTIVE_RUN_STATUSES, Gate, advance, final_status, model_refused
from shared.logs import context
from shared.records import MAX_ENDPOINT_RESULTS, Deployment, EndpointResult, PromoteResult, Run
from shared.settings import Settings, Target
from shared.usecases.fanout import FanOut
from shared.usecases.model_source import ModelSource
from shared.usecases.superseding import supersede
from shared.usecases.training import TrainingJobs


@dataclass
class Promotion:
    """A run's trained model to its endpoints, through the gate."""

    settings: Settings
    storage: Storage
    ledger: Ledger
    studio: StudioClients
    events: EventPublisher
    jobs: TrainingJobs
    fanout: FanOut
    gate: Gate

    def promote(self, run: Run, force: bool = False, unservable_is_rejection: bool = False) -> PromoteResult:
        """Gate, then deploy the run's model to every endpoint it routes to. `unservable_is_rejection`: a model
        no endpoint could serve ends the run Rejected (a hand-dropped file) rather than RolledBack/Failed."""
        with context(run=run.id):
            target = self.settings.target(run.target)
            if run.kind == "bes":
                if run.job_id is None:
                    return PromoteResult(run.id, "Pending", reason="the job has not been submitted yet")
                if run.status in ("Failed", "Cancelled", "Rejected", "Superseded"):
                    return PromoteResult(run.id, "Failed", reason=run.error)
                status = self.jobs.wait(run, target)
                if status.StatusCode in ("Failed", "Cancelled"):
                    self.jobs.ended(run, status)
                    return PromoteResult(run.id, "Failed", reason=run.error)
                if status.StatusCode != "Finished":
                    return PromoteResult(run.id, "Pending", reason=f"the job is {status.StatusCode}")
                self.jobs.finished(run, status)
                source = self.jobs.model_source(run, target, status)
            else:
                source = ModelSource(self.settings, self.storage.minter, self.studio, run.model_path or "")
            metric = run.metrics.get(self.gate.metric)
            if not force:
                reason = self.gate.check(metric)
                if reason is not None:
                    return self._below_gate(run, target, reason, metric)
            if run.status == "Trained" and run.kind == "bes" and self.settings.approval == "manual" and not force:
                return self._await_approval(run, target)
            if run.status == "AwaitingApproval":
                return PromoteResult(run.id, "Pending", reason="the run awaits an operator's approval")
            if run.status == "Trained":
                advance(run, "Deploying")
                self.ledger.save_run(run, check_etag=False)
            results = self.fanout.deploy(target, self.studio.resolve(target, run.endpoints), source, run, force,
                                         run.trigger)
            self._record(run, results, unservable_is_rejection)
            state: Literal["Pending", "Done"] = "Pending" if run.status == "Deploying" else "Done"
            return PromoteResult(run.id, state, results, reason=run.error, sas_refreshed_by_get=source.refreshed_by_get,
                                 sas_minted=source.minted)

    def _record(self, run: Run, results: list[EndpointResult], unservable_is_rejection: bool) -> None:
        """The per-endpoint outcomes on the run, and the status they add up to (once, when final)."""
        run.outcomes = dict(Counter(r.outcome for r in results))
        failed_first = sorted(results, key=lambda r: r.outcome in ("Deployed", "Unchanged"))
        run.endpoint_results = [{"endpoint": r.endpoint, "outcome": r.outcome, "reason": r.reason,
                                 "deploymentId": r.deployment_id} for r in failed_first[:MAX_ENDPOINT_RESULTS]]
        if run.status not in ACTIVE_RUN_STATUSES:
            self.ledger.save_run(run, check_etag=False)  # a redelivery of a finished run: nothing changes state
            return
        final = final_status(results)
        problems = sorted({f"{r.outcome}: {r.reason}" for r in results if r.reason and r.outcome not in (
            "Deployed", "Unchanged")})
        reason = "; ".join(problems)[:2000] or None
        if unservable_is_rejection and results and all(model_refused(r) for r in results):
            final, reason = "Rejected", f"ModelNotServable: no endpoint could serve the model: {reason}"
        if final != "Deploying":
            advance(run, final, reason if final != "Deployed" else None)
        self.ledger.save_run(run, check_etag=False)

    def _await_approval(self, run: Run, target: Target) -> PromoteResult:
        """Wait for an operator, showing the new model's metric beside each endpoint's serving one. Of runs for the
        same endpoints waiting at once, only the one on the newest data waits on: the others are superseded."""
        serving = []
        for ep in self.studio.resolve(target, run.endpoints)[:MAX_ENDPOINT_RESULTS]:
            cur = self.ledger.current(target.name, ep)
            serving.append({"endpoint": ep, "outcome": "AwaitingApproval", "servingModel": cur.model_path if cur
                            else None, "servingMetric": str(cur.metric) if cur and cur.metric is not None else None})
        waiting = [r for r in self.ledger.list_runs(("AwaitingApproval",), limit=1000)
                   if r.id != run.id and r.target == run.target and r.endpoints == run.endpoints]
        newer = [r for r in waiting if r.order > run.order]
        if newer:
            supersede(self.ledger, self.events, run, newer[0].id, "a run on newer data awaits approval")
            return PromoteResult(run.id, "Failed", reason=run.error)
        run.endpoint_results = serving
        advance(run, "AwaitingApproval")
        run.transitions[-1]["reason"] = "waiting for an operator: POST /api/runs/<id>/approve or /reject"
        self.ledger.save_run(run, check_etag=False)
        self.events.publish("RunAwaitingApproval", run.model_path or run.id, {
            "runId": run.id, "metric": self.gate.metric, "value": run.metrics.get(self.gate.metric),
            "endpoints": serving})
        for older in waiting:
            supersede(self.ledger, self.events, older, run.id, "a run on newer data awaits approval")
        return PromoteResult(run.id, "Pending", reason="the run awaits an operator's approval")

    def _below_gate(self, run: Run, target: Target, reason: str, metric: float | None) -> PromoteResult:
        if run.status == "Trained":
            endpoints = run.endpoints if run.endpoints != ["*"] else []
            advance(run, "BelowGate", f"BelowGate: {reason}")
            run.outcomes = {"Rejected": len(endpoints)} if endpoints else {}
            run.endpoint_results = [{"endpoint": ep, "outcome": "Rejected", "reason": reason, "deploymentId":
                                     f"run-{run.id}"} for ep in endpoints[:MAX_ENDPOINT_RESULTS]]
            self.ledger.save_run(run, check_etag=False)
            self.events.publish("ModelRejected", run.model_path or run.id, {
                "runId": run.id, "model": run.model_path, "code": "BelowGate", "metric": self.gate.metric,
                "value": metric, "minimum": self.gate.minimum, "reason": reason, "endpoints": run.endpoints})
            for ep in endpoints:
                self.ledger.add_deployment(Deployment(
                    id=f"run-{run.id}", target=target.name, endpoint=ep, outcome="Rejected", run_id=run.id,
                    model_path=run.model_path, data_time=run.data_time, metric=metric, reason=reason,
                    trigger=run.trigger))
        return PromoteResult(run.id, "Rejected", reason=reason)
