"""The event catalogue: one record per `Retrain.*` event type, what its data carries (ids, locations, metrics -
never a secret). `EventSink.publish` takes these records; docs/events.md and docs/events.schema.json are
generated from them (`python -m shared.events`), and a test keeps them in step."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PREFIX = "Retrain."


class Event(BaseModel):
    """An event: its subject (the blob, model or endpoint it is about) and its data."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
                              frozen=True)
    when: ClassVar[str] = ""  # when it is published (for the catalogue)
    about: ClassVar[str] = "the data blob path (or the run id)"  # what its subject names

    subject: str = Field(exclude=True)
    run_id: str | None = None

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def data(self) -> dict[str, Any]:
        """The CloudEvent's data: camelCase, with the fields that have a value."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class TrainingDataAccepted(Event):
    when = "a data file passed validation and routes to endpoints"
    blob: str
    rows: int
    bytes: int
    labels: dict[str, int]
    target: str
    endpoints: list[str]


class TrainingDataRejected(Event):
    when = "a data file was refused (moved to rejected/ with a reason file)"
    blob: str
    code: str
    message: str
    line: int | None = None
    moved_to: str | None = None
    reason_at: str | None = None  # for a file that stays where it is


class JobSubmitted(Event):
    when = "a training job was submitted and started"
    job_id: str | None
    target: str
    endpoints: list[str]
    model: str | None


class JobFinished(Event):
    when = "a training job finished: where its model and evaluation are, and the metrics"
    about = "the model blob path (or the run id)"
    job_id: str | None
    model: str | None
    evaluation: str | None
    metrics: dict[str, float]


class JobFailed(Event):
    when = "a training job failed, was cancelled, ran past its deadline, or was refused"
    job_id: str | None
    status: str  # Failed, Cancelled, DeadlineExceeded, Refused
    details: str | None = None


class ModelRejected(Event):
    when = "a model did not pass the gate (or cannot be used): it is not deployed"
    about = "the model blob path (or the run id); `<target>/<endpoint>` for `NoImprovement`"
    model: str | None
    code: str  # BelowGate, NoImprovement, EmptyModel, NoTarget, ModelNotServable, ...
    reason: str
    endpoint: str | None = None
    endpoints: list[str] | None = None
    metrics: dict[str, float] | None = None
    moved_to: str | None = None
    reason_at: str | None = None


class EndpointUpdated(Event):
    when = ("an endpoint serves a new model, verified, and the ledger recorded its pointer change (published only "
            "then); of an endpoint's, the highest `sequence` is what it serves")
    about = "`<target>/<endpoint>`"
    endpoint: str
    target: str
    model: str | None
    metrics: dict[str, float] = Field(default_factory=dict)
    operation: str
    deployment_id: str
    sequence: int | None = None  # the endpoint's pointer changes, counted: a later change has a higher one (always
    # set by the app; absent only in events published before it was)
    previous_model: str | None = None  # what the endpoint served before this change
    data_time: str | None = None  # when the model's training data landed (an operator's action: its own)


class EndpointUpdateFailed(Event):
    when = "a model could not be put on an endpoint (willRetry: the attempt stays open)"
    about = "`<target>/<endpoint>`"
    endpoint: str
    model: str | None
    reason: str
    will_retry: bool


class EndpointRolledBack(Event):
    when = "an endpoint went back to an earlier model: after a failed verification, or on an operator's word"
    about = "`<target>/<endpoint>`"
    endpoint: str
    restored_model: str | None
    failed_model: str | None = None
    restored: bool = True
    reason: str | None = None
    to_deployment: str | None = None
    deployment_id: str | None = None


class RunAwaitingApproval(Event):
    when = "a run passed the gate and waits for an operator (RETRAIN_APPROVAL=manual)"
    about = "the model blob path (or the run id)"
    metrics: dict[str, float]
    endpoints: list[dict[str, Any]]


class RunApproved(Event):
    when = "an operator approved a waiting run"
    about = "the model blob path (or the run id)"
    by: str


class RunRejected(Event):
    when = "an operator rejected a waiting run"
    about = "the model blob path (or the run id)"
    by: str
    reason: str | None = None


class RunExpired(Event):
    when = "nobody decided on a waiting run within RETRAIN_APPROVAL_EXPIRY_HOURS"
    about = "the model blob path (or the run id)"


class RunSuperseded(Event):
    when = "a run was replaced by one on newer data for the same endpoints"
    superseded_by: str
    why: str


CATALOGUE: tuple[type[Event], ...] = (
    TrainingDataAccepted, TrainingDataRejected, JobSubmitted, JobFinished, JobFailed, ModelRejected,
    EndpointUpdated, EndpointUpdateFailed, EndpointRolledBack, RunAwaitingApproval, RunApproved, RunRejected,
    RunExpired, RunSuperseded)
EVENT_TYPES = tuple(e.type_name() for e in CATALOGUE)


def json_schema() -> dict[str, Any]:
    """A JSON Schema per event type's data, keyed by the CloudEvent type."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Retrain.* CloudEvents: the data of each type",
            "oneOf": [{"$ref": f"#/$defs/{e.type_name()}"} for e in CATALOGUE],
            "$defs": {e.type_name(): dict(e.model_json_schema(by_alias=True, mode="serialization"),
                                          title=PREFIX + e.type_name(), description=e.when) for e in CATALOGUE}}


def markdown_table() -> str:
    """The catalogue as the docs' table: type, when, subject, data fields (optional ones in brackets)."""
    lines = ["| type | published when | `subject` | `data` |", "|---|---|---|---|"]
    for event in CATALOGUE:
        fields = ", ".join(f"`{to_camel(name)}`" if f.is_required() else f"[`{to_camel(name)}`]"
                           for name, f in event.model_fields.items() if name != "subject")
        lines.append(f"| `{PREFIX}{event.type_name()}` | {event.when} | {event.about} | {fields} |")
    return "\n".join(lines)


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"
