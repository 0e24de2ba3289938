"""The training service port: submit a job for a data file, follow it, cancel it. A job reads one data file and
writes a model and its evaluation into the app's models container (where, the service's adapter decides)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from shared.records import BlobRef

JobPhase = Literal["NotStarted", "Running", "Finished", "Failed", "Cancelled"]


@dataclass(frozen=True)
class SubmittedJob:
    """A job the service took (not started yet), and where it will write the model and its evaluation."""

    job_id: str
    model_path: str  # <container>/<name> in the app's storage
    evaluation_path: str


@dataclass(frozen=True)
class JobState:
    phase: JobPhase
    details: str | None = None  # why it failed, in the service's words
    model_path: str | None = None  # where the model is, once Finished
    evaluation_path: str | None = None

    @property
    def ended(self) -> bool:
        return self.phase in ("Finished", "Failed", "Cancelled")


class TrainingService(ABC):
    """One target's training service. Errors: `shared.errors.ServiceError` (transient or a refusal)."""

    @abstractmethod
    def submit(self, run_id: str, data: BlobRef) -> SubmittedJob:
        """Submit a job training on `data` (not started). Not retried after an answer that may have been lost."""

    @abstractmethod
    def start(self, job_id: str) -> None:
        """Start a submitted job; starting one that runs already is no error."""

    @abstractmethod
    def state(self, job_id: str) -> JobState:
        """Where the job is."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel a job that has not ended."""

    def run_of(self, job_id: str) -> str | None:
        """The run a job of this service belongs to, from its id alone (for a service's own events about its
        jobs); None when its ids do not say."""
        return None
