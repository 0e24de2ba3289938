"""What the ledger records, as plain data (no I/O): training runs, deployment attempts, each endpoint's `current`
pointer, and the results the use cases hand back. Field names are the ledger's (snake_case); the HTTP API shows
them in camelCase through the alias generator, and dict/list fields are stored in a table cell as JSON text.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator
from pydantic.alias_generators import to_camel

RunStatus = Literal["Accepted", "Rejected", "Submitted", "Training", "Trained", "BelowGate", "AwaitingApproval",
                    "Deploying", "Deployed", "PartiallyDeployed", "RolledBack", "Failed", "Superseded", "Cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = ("Accepted", "Rejected", "Submitted", "Training", "Trained", "BelowGate",
                                      "AwaitingApproval", "Deploying", "Deployed", "PartiallyDeployed", "RolledBack",
                                      "Failed", "Superseded", "Cancelled")
Outcome = Literal["Pending", "Deployed", "Superseded", "Rejected", "Failed", "RolledBack", "Created", "Skipped",
                  "Refused"]
Operation = Literal["promote", "patch", "rollback", "create", "adopt"]
ADOPTED = "adopted"  # the attempt id of an endpoint's baseline: what it served when the app first met it


def _from_json_text(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _to_json_text(value: object) -> str:
    return json.dumps(value)


# A table cell holds no dict or list: such fields go to the ledger as JSON text and come back parsed.
Stored = (BeforeValidator(_from_json_text), PlainSerializer(_to_json_text, when_used="json"))
Metrics = Annotated[dict[str, float], *Stored]
Names = Annotated[list[str], *Stored]
Row = Annotated[dict[str, str] | None, *Stored]
Counts = Annotated[dict[str, int], *Stored]
Transitions = Annotated[list[dict[str, str]], *Stored]
Results = Annotated[list[dict[str, str | None]], *Stored]
MAX_ENDPOINT_RESULTS = 100  # on the run; every endpoint's attempt is in the deployments table


def iso(moment: datetime) -> str:
    """A UTC timestamp as the ledger writes it (milliseconds, `Z`): such strings sort in time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def run_id_for(blob_path: str, etag: str) -> str:
    """A run's id: inserting it is the idempotency check, so one file version never starts two jobs."""
    return hashlib.sha256(f"{blob_path}\n{etag.strip(chr(34))}".encode()).hexdigest()[:32]


def new_operation_id() -> str:
    return f"op-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"


class Record(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    etag: str | None = Field(None, exclude=True)


class Run(Record):
    id: str
    kind: Literal["bes", "manual"] = "bes"
    status: RunStatus = "Accepted"
    target: str
    endpoints: Names = Field(default_factory=list)
    data_path: str | None = None
    data_etag: str | None = None
    data_time: str = Field(default_factory=now_iso)  # when the training data landed: newer data wins
    job_id: str | None = None
    model_path: str | None = None
    model_base: str | None = None  # where the model is when not in the app's storage (an operator's rollback)
    evaluation_path: str | None = None
    metrics: Metrics = Field(default_factory=dict)
    forced: bool = False  # deployed past the gate on an operator's word
    rows: int | None = None
    smoke_row: Row = None
    trigger: str = "blob"
    caller: str | None = None  # who asked (an operator's principal name), for HTTP-triggered runs
    error: str | None = None  # why it did not (fully) succeed
    superseded_by: str | None = None  # the run that replaced it
    outcomes: Counts = Field(default_factory=dict)  # endpoints per outcome
    endpoint_results: Results = Field(default_factory=list)  # per endpoint (the first MAX_ENDPOINT_RESULTS)
    transitions: Transitions = Field(default_factory=list)  # [{status, at, reason?}], one per status change
    claimed_by: str | None = None  # the invocation working on this run (accept/submit), until claimed_until
    claimed_until: float = 0.0
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    submitted_at: str | None = None
    finished_at: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_status(cls, data: Any) -> Any:
        """Rows written before the lifecycle had its own states: Running -> Training, Finished -> Deployed when
        it was promoted, else Trained."""
        if isinstance(data, dict) and data.get("status") in ("Running", "Finished"):
            legacy = data["status"]
            data = dict(data, status="Training" if legacy == "Running" else
                        ("Deployed" if data.get("promoted") in (True, "true", "True") else "Trained"))
        return data

    @property
    def order(self) -> str:
        """Where this run's data stands in "newest data wins": when the data landed (Last-Modified, whole
        seconds), then when the app took it in (ms), then the run id - a total order, never a tie between runs."""
        return f"{self.data_time}|{self.created_at}|{self.id}"


class Deployment(Record):
    """One attempt to put a model on one endpoint."""

    id: str
    target: str
    endpoint: str
    outcome: Outcome = "Pending"
    operation: Operation = "promote"
    run_id: str | None = None
    model_base: str | None = None  # BaseLocation, no token
    model_path: str | None = None  # RelativeLocation
    data_time: str | None = None
    data_order: str | None = None  # the run's `order`
    metric: float | None = None  # the gate's first metric
    metrics: Metrics = Field(default_factory=dict)  # every gated metric
    reason: str | None = None
    trigger: str = "blob"
    restores: str | None = None  # a rollback: the deployment whose model it put back
    forced: bool = False  # deployed past the gate on an operator's word
    caller: str | None = None  # who asked (an operator's principal name), for operator actions
    # an operator's action carried out later (handed to the work queue): the deployment the endpoint's pointer named
    # when the operator acted ("-": none) - the action applies only while it still does
    decided_on: str | None = None
    sequence: int | None = None  # the endpoint's pointer sequence this attempt took when it went live
    duration_ms: int | None = None
    created_at: str = Field(default_factory=now_iso)


class Current(Record):
    """The `current` row of an endpoint: what it serves, and who holds the deployment lease."""

    target: str
    endpoint: str
    deployment_id: str | None = None
    run_id: str | None = None
    model_base: str | None = None
    model_path: str | None = None
    data_time: str | None = None
    data_order: str | None = None
    metric: float | None = None
    metrics: Metrics = Field(default_factory=dict)
    lease_owner: str | None = None
    lease_until: float = 0.0
    sequence: int = 0  # one more at every pointer change: the endpoint's order of changes (EndpointUpdated's)

    def serve(self, dep: Deployment) -> None:
        """Point at `dep` as what the endpoint now serves (the next in its sequence)."""
        self.sequence += 1
        dep.sequence = self.sequence  # (the attempt keeps the place it took: its announcement carries it too)
        self.deployment_id, self.run_id = dep.id, dep.run_id
        self.model_base, self.model_path, self.data_time, self.metric = (dep.model_base, dep.model_path,
                                                                         dep.data_time, dep.metric)
        self.data_order, self.metrics = dep.data_order, dict(dep.metrics)


class Watch(Record):
    """A deployment watched after it went live: until `until`, reconcile checks that every endpoint whose pointer
    names the deployment (`id`) still answers with the model, and rolls back one that stopped."""

    id: str  # the deployment id watched (`run-<run id>`: one watch for a run's whole fan-out)
    target: str
    run_id: str | None = None
    model_path: str | None = None
    model_base: str | None = None
    until: str  # ISO time the watch ends
    smoke_row: Row = None
    created_at: str = Field(default_factory=now_iso)


@dataclass
class BlobRef:
    """A blob in the app's storage account: `container/name`."""

    container: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.container}/{self.name}"

    @classmethod
    def parse(cls, path: str) -> BlobRef:
        container, sep, name = path.strip("/").partition("/")
        if not sep or not container or not name:
            raise ValueError(f"'{path}' is not <container>/<blob>")
        return cls(container, name)


@dataclass
class EndpointResult:
    endpoint: str
    outcome: str
    reason: str | None = None
    deployment_id: str | None = None
    serving: str | None = None  # the model the endpoint serves after the operation (when known)
    previous: str | None = None  # ... and before it

    def view(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "outcome": self.outcome, "reason": self.reason,
                "deploymentId": self.deployment_id, "serving": self.serving, "previous": self.previous}


@dataclass
class PromoteResult:
    run_id: str
    status: Literal["Pending", "Done", "Rejected", "Failed"]
    endpoints: list[EndpointResult] = field(default_factory=list)
    reason: str | None = None
