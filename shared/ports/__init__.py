"""The ports: the small interfaces the use cases talk to, in the project's own words. Adapters implement them
(`shared.adapters` for Azure Storage and Studio (classic)); in-memory fakes implement them for tests
(`tests/fakes`). Nothing here imports an SDK."""

from shared.ports.blobs import BlobInfo, BlobStore, Grant, SasPurpose
from shared.ports.events import EventBatch, EventSink
from shared.ports.ledger import LeasedAttempt, Ledger
from shared.ports.services import Services, TargetKind
from shared.ports.serving import EndpointInfo, ModelRef, Observed, ServingTarget, Verdict
from shared.ports.training import JobState, SubmittedJob, TrainingService

__all__ = [
           "BlobInfo",
           "BlobStore",
           "EndpointInfo",
           "EventBatch",
           "EventSink",
           "Grant",
           "JobState",
           "LeasedAttempt",
           "Ledger",
           "ModelRef",
           "Observed",
           "SasPurpose",
           "Services",
           "ServingTarget",
           "SubmittedJob",
           "TargetKind",
           "TrainingService",
           "Verdict",
]
