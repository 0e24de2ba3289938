"""Promoting a run's model: wait for its job to end, apply the gate, then deploy to every endpoint the run routes
to (concurrently, bounded). A model below the gate is recorded as rejected on each of those endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.adapters.storage import Storage
from shared.adapters.studio import StudioClients
from shared.decisions import Gate
from shared.logs import context
from shared.records import Deployment, PromoteResult, Run
from shared.settings import Settings, Target
from shared.usecases.fanout import FanOut
from shared.usecases.model_source import ModelSource
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

    def promote(self, run: Run, force: bool = False) -> PromoteResult:
        """Gate, then deploy the run's model to every endpoint it routes to."""
        with context(run=run.id):
            target = self.settings.target(run.target)
            if run.kind == "bes":
                if run.job_id is None:
                    return PromoteResult(run.id, "Pending", reason="the job has not been submitted yet")
                if run.status in ("Failed", "Cancelled", "Rejected"):
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
            results = self.fanout.deploy(target, self._resolve(target, run.endpoints), source, run, force,
                                         run.trigger)
            pending = [r.endpoint for r in results if r.outcome == "Pending"]
            if pending:  # not final: the reconcile timer (or a redelivery) finishes these endpoints
                return PromoteResult(run.id, "Pending", results, reason=f"{len(pending)} endpoint(s) still to do: "
                                     f"{', '.join(pending[:10])}", sas_refreshed_by_get=source.refreshed_by_get,
                                     sas_minted=source.minted)
            if not run.promoted:
                run.promoted = True
                self.ledger.save_run(run, check_etag=False)
            return PromoteResult(run.id, "Done", results, sas_refreshed_by_get=source.refreshed_by_get,
                                 sas_minted=source.minted)

    def _resolve(self, target: Target, endpoints: list[str]) -> list[str]:
        """`["*"]` is every non-default endpoint of the service."""
        if endpoints != ["*"]:
            return endpoints
        default = self.studio.default_endpoint(target)
        return [e.Name for e in self.studio.management(target).list_endpoints() if e.Name != default]

    def _below_gate(self, run: Run, target: Target, reason: str, metric: float | None) -> PromoteResult:
        if not run.promoted:
            run.promoted, run.error = True, f"ModelRejected: {reason}"
            self.ledger.save_run(run, check_etag=False)
            self.events.publish("ModelRejected", run.model_path or run.id, {
                "runId": run.id, "model": run.model_path, "code": "BelowGate", "metric": self.gate.metric,
                "value": metric, "minimum": self.gate.minimum, "reason": reason, "endpoints": run.endpoints})
            for ep in run.endpoints if run.endpoints != ["*"] else []:
                self.ledger.add_deployment(Deployment(
                    id=f"run-{run.id}", target=target.name, endpoint=ep, outcome="Rejected", run_id=run.id,
                    model_path=run.model_path, data_time=run.data_time, metric=metric, reason=reason,
                    trigger=run.trigger))
        return PromoteResult(run.id, "Rejected", reason=reason)
