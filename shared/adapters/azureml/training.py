"""Azure ML as a training service: a command job (the target's `job` properties) whose `training_data` input is the
landed file, read by the workspace with its own identity (no SAS), and whose `model` and `evaluation` outputs are
folders in the app's models container - `evaluation.csv` there holds the metrics the gate reads (one header row of
metric names, one row of values, as Studio's Evaluate Model writes them). Job names are `retrain-<run id>`, so a
redelivered submit finds its job and a workspace event names its run."""

from __future__ import annotations

import copy
from typing import Any

from shared.adapters.azureml.arm import Arm
from shared.adapters.azureml.errors import AzureMLError
from shared.ports.blobs import BlobStore
from shared.ports.training import JobPhase, JobState, SubmittedJob, TrainingService
from shared.records import BlobRef
from shared.settings import Settings, Target

JOB_PREFIX = "retrain-"
PHASES: dict[str, JobPhase] = {
    "NotStarted": "NotStarted", "Starting": "Running", "Provisioning": "Running", "Preparing": "Running",
    "Queued": "Running", "Running": "Running", "Finalizing": "Running", "CancelRequested": "Running",
    "NotResponding": "Running", "Paused": "Running", "Unknown": "Running",
    "Completed": "Finished", "Failed": "Failed", "Canceled": "Cancelled"}
EVALUATION_FILE = "evaluation.csv"


def job_name(run_id: str) -> str:
    return f"{JOB_PREFIX}{run_id}"


def run_of(job: str) -> str | None:
    """The run a job of this app belongs to (None for a job the app did not submit)."""
    return job[len(JOB_PREFIX):] if job.startswith(JOB_PREFIX) and len(job) > len(JOB_PREFIX) else None


class AzureMLTraining(TrainingService):
    def __init__(self, settings: Settings, target: Target, arm: Arm, storage: BlobStore) -> None:
        assert target.azureml is not None
        self.settings, self.target, self.config, self.arm, self.storage = (settings, target, target.azureml, arm,
                                                                           storage)

    def uri(self, path: str, folder: bool = False) -> str:
        """Where the workspace finds `<container>/<name>` of the app's storage: through the target's datastore
        when it names one, else the blob's URL (identity-based access)."""
        suffix = "/" if folder and not path.endswith("/") else ""
        if self.config.datastore:
            return f"azureml://datastores/{self.config.datastore}/paths/{path}{suffix}"
        return f"{self.storage.base}{path}{suffix}"

    def outputs(self, run_id: str) -> tuple[str, str]:
        """The model folder and the evaluation file of a run, in the app's storage."""
        folder = f"{self.settings.models_container}/{run_id}"
        return f"{folder}/model", f"{folder}/evaluation/{EVALUATION_FILE}"

    def submit(self, run_id: str, data: BlobRef) -> SubmittedJob:
        model, evaluation = self.outputs(run_id)
        props: dict[str, Any] = copy.deepcopy(self.config.job)
        props.update(jobType="Command", displayName=f"retrain {data.path}"[:200])
        props["inputs"] = {**props.get("inputs", {}), "training_data": {
            "jobInputType": "uri_file", "uri": self.uri(data.path), "mode": "Download"}}
        props["outputs"] = {**props.get("outputs", {}), "model": {
            "jobOutputType": "uri_folder", "uri": self.uri(model, folder=True), "mode": "Upload"},
            "evaluation": {"jobOutputType": "uri_folder", "uri": self.uri(evaluation.rsplit("/", 1)[0], folder=True),
                           "mode": "Upload"}}
        props["tags"] = {**props.get("tags", {}), "retrain.run": run_id, "retrain.data": data.path}
        name = job_name(run_id)
        if self.arm.find(f"/jobs/{name}", f"get job {name}") is None:  # a redelivery finds the one it submitted
            self.arm.json("PUT", f"/jobs/{name}", f"submit job {name}", {"properties": props})
        return SubmittedJob(name, model, evaluation)

    def start(self, job_id: str) -> None:
        """Azure ML starts a job when it is submitted."""

    def state(self, job_id: str) -> JobState:
        job = self.arm.get(f"/jobs/{job_id}", f"get job {job_id}")
        props = job.get("properties") or {}
        status = str(props.get("status") or "Unknown")
        phase = PHASES.get(status, "Running")
        reason = (props.get("properties") or {}).get("azureml.failureReason") if phase == "Failed" else None
        run_id = run_of(job_id)
        model, evaluation = self.outputs(run_id) if run_id else (None, None)
        done = phase == "Finished"
        return JobState(phase, reason or (f"the job is {status}" if phase in ("Failed", "Cancelled") else None),
                        model if done else None, evaluation if done else None)

    def run_of(self, job_id: str) -> str | None:
        return run_of(job_id)

    def cancel(self, job_id: str) -> None:
        try:
            self.arm.send("POST", f"/jobs/{job_id}/cancel", f"cancel job {job_id}")
        except AzureMLError as exc:
            if exc.status != 404:
                raise
