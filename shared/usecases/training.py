"""The training side of a run once its BES job exists: wait for the job, record how it ended (its metrics from
the Evaluate Model output, or why it failed), and say where the trained model is."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.classic.models import JobStatus, ResourceLocation
from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.adapters.storage import Storage
from shared.adapters.studio import StudioClients
from shared.decisions import advance
from shared.records import BlobRef, Run, now_iso
from shared.settings import Settings, Target
from shared.usecases.model_source import ModelSource

log = logging.getLogger("shared.usecases.training")


@dataclass
class TrainingJobs:
    """A run's BES job: wait for it, record how it ended, and where its model is."""

    settings: Settings
    storage: Storage
    ledger: Ledger
    studio: StudioClients
    events: EventPublisher

    def wait(self, run: Run, target: Target) -> JobStatus:
        """Poll the run's job until it ends, or RETRAIN_JOB_WAIT_SECONDS pass."""
        bes = self.studio.bes(target)
        deadline = time.monotonic() + self.settings.job_wait_seconds
        assert run.job_id
        while True:
            status = bes.get(run.job_id)
            if status.terminal or time.monotonic() >= deadline:
                return status
            time.sleep(self.settings.job_poll_seconds)

    def finished(self, run: Run, status: JobStatus) -> None:
        """Record a finished job: where its model and evaluation are, and the metrics."""
        if run.status != "Submitted" and run.status != "Training":
            return  # recorded already
        evaluation = (status.Results or {}).get(self.settings.evaluation_output)
        model = (status.Results or {}).get(self.settings.model_output)
        if model is not None:
            run.model_path = model.RelativeLocation
        if evaluation is not None:
            run.evaluation_path = evaluation.RelativeLocation
            try:  # an unreadable evaluation leaves no metrics: the gate then refuses the model (fails closed)
                run.metrics = self.storage.read_evaluation(BlobRef.parse(evaluation.RelativeLocation))
            except (ValueError, ResourceNotFoundError) as exc:
                log.warning("could not read the evaluation of run %s: %s", run.id, exc)
        advance(run, "Trained")
        run.finished_at = now_iso()
        self.ledger.save_run(run, check_etag=False)
        self.events.publish("JobFinished", run.model_path or run.id, {
            "runId": run.id, "jobId": run.job_id, "model": run.model_path, "evaluation": run.evaluation_path,
            "metrics": run.metrics})

    def ended(self, run: Run, status: JobStatus) -> None:
        """Record a job that failed or was cancelled."""
        if run.status in ("Failed", "Cancelled"):
            return
        reason = f"JobFailed: {status.Details or f'the job was {status.StatusCode}'}"
        advance(run, "Failed" if status.StatusCode == "Failed" else "Cancelled", reason)
        run.finished_at = now_iso()
        self.ledger.save_run(run, check_etag=False)
        self.events.publish("JobFailed", run.data_path or run.id, {"runId": run.id, "jobId": run.job_id,
                                                                   "status": status.StatusCode,
                                                                   "details": run.error})

    def model_source(self, run: Run, target: Target, status: JobStatus) -> ModelSource:
        """The trained model, with the location (and token) the job reported, to be refreshed by a GET of the job."""
        model = (status.Results or {}).get(self.settings.model_output)
        results = None
        if model is not None and model.BaseLocation and model.SasBlobToken:
            results = ResourceLocation(BaseLocation=model.BaseLocation, RelativeLocation=model.RelativeLocation,
                                       SasBlobToken=model.SasBlobToken)
        return ModelSource(self.settings, self.storage.minter, self.studio,
                           results.RelativeLocation if results else run.model_path or "",
                           base=results.BaseLocation if results else None, target=target, job_id=run.job_id,
                           results_location=results)
