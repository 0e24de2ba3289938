"""Submitting a run's BES job: the training service reads the data file and writes the model and its evaluation
to `models/<run>/`. The job id is recorded before the job is started, so a retry never submits twice; a refusal
of the job is final, a service past the retry budget is left to the platform's retry of the trigger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from shared import failpoints
from shared.adapters.classic.errors import StudioApiError, describe_error
from shared.adapters.classic.models import AzureBlobDataReference, BatchJobRequest
from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.adapters.storage import Storage
from shared.adapters.studio import StudioClients
from shared.decisions import advance
from shared.records import BlobRef, Run, now_iso
from shared.settings import Settings

log = logging.getLogger("shared.usecases.submission")


@dataclass
class JobSubmission:
    """Submits and starts the BES job of an accepted run."""

    settings: Settings
    storage: Storage
    ledger: Ledger
    studio: StudioClients
    events: EventPublisher

    def _data_reference(self, ref: BlobRef, write: bool) -> AzureBlobDataReference:
        """How BES reaches a blob: the account's connection string when the app has a key, else a SAS token."""
        connection_string = self.storage.connection_string_for_jobs()
        if connection_string is not None:
            return AzureBlobDataReference(ConnectionString=connection_string, RelativeLocation=ref.path)
        lifetime = timedelta(minutes=self.settings.job_deadline_minutes + 60)
        minter = self.storage.minter
        token = minter.write_token(ref.container, ref.name, lifetime) if write else \
            minter.read_token(ref.container, ref.name, lifetime)
        return AzureBlobDataReference(BaseLocation=minter.base_location, RelativeLocation=ref.path,
                                      SasBlobToken=token)

    def submit(self, run: Run, ref: BlobRef) -> Run:
        """Submit (once: the job id is recorded before the start) and start the run's BES job."""
        s = self.settings
        bes = self.studio.bes(s.target(run.target))
        model_ref = BlobRef(s.models_container, f"{run.id}/model.ilearner")
        eval_ref = BlobRef(s.models_container, f"{run.id}/evaluation.csv")
        request = BatchJobRequest(
            Inputs={"input1": self._data_reference(ref, write=False)},
            Outputs={s.model_output: self._data_reference(model_ref, write=True),
                     s.evaluation_output: self._data_reference(eval_ref, write=True)},
            GlobalParameters=dict(s.bes_global_parameters))
        try:
            if run.job_id is None:
                run.job_id = bes.submit(request)
                advance(run, "Submitted")
                run.submitted_at, run.model_path, run.evaluation_path = now_iso(), model_ref.path, eval_ref.path
                self.ledger.save_run(run, check_etag=False)
                failpoints.reached("after-submit")
            bes.start(run.job_id)
        except StudioApiError as exc:
            if exc.transient:
                raise  # past the retry budget: let the platform retry the trigger
            advance(run, "Failed", f"JobRefused: BES refused the job: {describe_error(exc)}")
            run.claimed_by, run.claimed_until = None, 0.0
            self.ledger.save_run(run, check_etag=False)
            self.events.publish("JobFailed", run.data_path or run.id, {"runId": run.id, "jobId": run.job_id,
                                                                       "error": run.error})
            return run
        return self.started(run)

    def started(self, run: Run) -> Run:
        """Record that the run's job runs, and announce it (also when reconcile started a job a crash left)."""
        advance(run, "Training")
        run.claimed_by, run.claimed_until = None, 0.0
        self.ledger.save_run(run, check_etag=False)
        log.info("BES job %s started for %s", run.job_id, run.data_path)
        self.events.publish("JobSubmitted", run.data_path or run.id, {
            "runId": run.id, "jobId": run.job_id, "target": run.target, "endpoints": run.endpoints,
            "model": run.model_path})
        return run
