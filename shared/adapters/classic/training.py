"""Studio (classic) as a training service: a Batch Execution Service job on the training web service reads the data
file and writes the model (`.ilearner`) and its evaluation to `models/<run>/`. A job gets blob-scoped SAS grants
for exactly its input (read) and its two outputs (create/write) - never an account key."""

from __future__ import annotations

from shared.adapters.classic.clients import StudioClients
from shared.adapters.classic.models import AzureBlobDataReference, BatchJobRequest, ResourceLocation
from shared.adapters.sas import SasPolicy, needs_refresh
from shared.ports.blobs import BlobStore, SasPurpose
from shared.ports.training import JobState, SubmittedJob, TrainingService
from shared.records import BlobRef
from shared.settings import Settings, Target


class ClassicTraining(TrainingService):
    def __init__(self, settings: Settings, target: Target, studio: StudioClients, storage: BlobStore) -> None:
        self.settings, self.target, self.studio, self.storage = settings, target, studio, storage

    def _reference(self, ref: BlobRef, purpose: SasPurpose) -> AzureBlobDataReference:
        grant = self.storage.grant(ref, purpose)
        return AzureBlobDataReference(BaseLocation=grant.base, RelativeLocation=grant.path, SasBlobToken=grant.token)

    def submit(self, run_id: str, data: BlobRef) -> SubmittedJob:
        s = self.settings
        model = BlobRef(s.models_container, f"{run_id}/model.ilearner")
        evaluation = BlobRef(s.models_container, f"{run_id}/evaluation.csv")
        request = BatchJobRequest(
            Inputs={"input1": self._reference(data, SasPurpose.JOB_INPUT)},
            Outputs={s.model_output: self._reference(model, SasPurpose.JOB_OUTPUT),
                     s.evaluation_output: self._reference(evaluation, SasPurpose.JOB_OUTPUT)},
            GlobalParameters=dict(s.bes_global_parameters))
        job_id = self.studio.bes(self.target).submit(request)
        return SubmittedJob(job_id, model.path, evaluation.path)

    def start(self, job_id: str) -> None:
        self.studio.bes(self.target).start(job_id)

    def state(self, job_id: str) -> JobState:
        status = self.studio.bes(self.target).get(job_id)
        results = status.Results or {}
        model, evaluation = results.get(self.settings.model_output), results.get(self.settings.evaluation_output)
        return JobState(status.StatusCode, status.Details, model.RelativeLocation if model else None,
                        evaluation.RelativeLocation if evaluation else None)

    def cancel(self, job_id: str) -> None:
        self.studio.bes(self.target).cancel(job_id)

    def model_location(self, job_id: str) -> ResourceLocation | None:
        """The model's location with the token the job's results carry, when it is fresh and can read it (the
        documented way to a fresh token: GET the job again)."""
        status = self.studio.bes(self.target).get(job_id)
        ref = (status.Results or {}).get(self.settings.model_output)
        margin = SasPolicy.from_settings(self.settings).refresh_margin
        if ref is None or not ref.SasBlobToken or not ref.BaseLocation or needs_refresh(ref.SasBlobToken, margin):
            return None
        return ResourceLocation(BaseLocation=ref.BaseLocation, RelativeLocation=ref.RelativeLocation,
                                SasBlobToken=ref.SasBlobToken)
