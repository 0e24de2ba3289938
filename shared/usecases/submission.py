"""Submitting a run's training job: the training service reads the data file and writes the model and its
evaluation. The job id is recorded before the job is started, so a retry never submits twice; a refusal of the job
is final, a service past the retry budget is left to the platform's retry of the trigger."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared import failpoints
from shared.errors import ServiceError, describe
from shared.events import JobFailed, JobSubmitted
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.records import BlobRef, Run, now_iso

log = logging.getLogger("shared.usecases.submission")


@dataclass
class JobSubmission:
    """Submits and starts the training job of an accepted run."""

    ledger: Ledger
    services: Services
    events: EventSink

    def submit(self, run: Run, ref: BlobRef) -> Run:
        """Submit (once: the job id is recorded before the start) and start the run's job."""
        training = self.services.training(run.target)
        try:
            if run.job_id is None:
                job = training.submit(run.id, ref)
                self.ledger.change(run, "Submitted", job_id=job.job_id, submitted_at=now_iso(),
                                   model_path=job.model_path, evaluation_path=job.evaluation_path)
                failpoints.reached("after-submit")
            assert run.job_id is not None
            training.start(run.job_id)
        except ServiceError as exc:
            if exc.transient:
                raise  # past the retry budget: let the platform retry the trigger
            self.ledger.change(run, "Failed", f"JobRefused: the training service refused the job: {describe(exc)}",
                               release_claim=True)
            self.events.publish(JobFailed(subject=run.data_path or run.id, run_id=run.id, job_id=run.job_id,
                                          status="Refused", details=run.error))
            return run
        return self.started(run)

    def started(self, run: Run) -> Run:
        """Record that the run's job runs, and announce it (also when reconcile started a job a crash left)."""
        self.ledger.change(run, "Training", release_claim=True)
        log.info("job %s started for %s", run.job_id, run.data_path)
        self.events.publish(JobSubmitted(subject=run.data_path or run.id, run_id=run.id, job_id=run.job_id,
                                         target=run.target, endpoints=run.endpoints, model=run.model_path))
        return run
