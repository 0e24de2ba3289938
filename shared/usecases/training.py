"""The training side of a run once its job exists: wait for the job, record how it ended (its metrics from the
evaluation it wrote, or why it failed), and say which model it made."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared.errors import NotFound
from shared.events import JobFailed, JobFinished
from shared.ports.blobs import BlobStore
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.ports.serving import ModelRef
from shared.ports.training import JobState
from shared.records import BlobRef, Run, now_iso
from shared.settings import Settings

log = logging.getLogger("shared.usecases.training")


@dataclass
class TrainingJobs:
    """A run's job: wait for it, record how it ended, and which model it made."""

    settings: Settings
    storage: BlobStore
    ledger: Ledger
    services: Services
    events: EventSink

    def wait(self, run: Run) -> JobState:
        """Poll the run's job until it ends, or RETRAIN_JOB_WAIT_SECONDS pass."""
        training = self.services.training(run.target)
        deadline = time.monotonic() + self.settings.job_wait_seconds
        assert run.job_id
        while True:
            state = training.state(run.job_id)
            if state.ended or time.monotonic() >= deadline:
                return state
            time.sleep(self.settings.job_poll_seconds)

    def finished(self, run: Run, state: JobState) -> None:
        """Record a finished job: where its model and evaluation are, and the metrics."""
        if run.status not in ("Submitted", "Training"):
            return  # recorded already
        evaluation = state.evaluation_path or run.evaluation_path
        metrics: dict[str, float] = {}
        if evaluation is not None:
            try:  # an unreadable evaluation leaves no metrics: the gate then refuses the model (fails closed)
                metrics = self.storage.read_evaluation(BlobRef.parse(evaluation))
            except (ValueError, NotFound) as exc:
                log.warning("could not read the evaluation of run %s: %s", run.id, exc)
        self.ledger.change(run, "Trained", model_path=state.model_path or run.model_path, evaluation_path=evaluation,
                           metrics=metrics, finished_at=now_iso())
        self.events.publish(JobFinished(subject=run.model_path or run.id, run_id=run.id, job_id=run.job_id,
                                        model=run.model_path, evaluation=run.evaluation_path, metrics=run.metrics))

    def ended(self, run: Run, state: JobState, status: str | None = None) -> None:
        """Record a job that failed or was cancelled (`status`: how to name it, e.g. DeadlineExceeded)."""
        if run.status in ("Failed", "Cancelled"):
            return
        prefix = "DeadlineExceeded" if status == "DeadlineExceeded" else "JobFailed"
        reason = f"{prefix}: {state.details or f'the job was {state.phase}'}"
        self.ledger.change(run, "Failed" if state.phase == "Failed" else "Cancelled", reason, finished_at=now_iso())
        self.events.publish(JobFailed(subject=run.data_path or run.id, run_id=run.id, job_id=run.job_id,
                                      status=status or state.phase, details=run.error))

    @staticmethod
    def model(run: Run) -> ModelRef:
        """The model a run's job made (its job can tell how to reach it)."""
        return ModelRef(run.model_path or "", job_id=run.job_id)
