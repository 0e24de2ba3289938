"""The stand-in's state: endpoints, deployments, model versions, jobs and long-running operations.

In memory; with the emulator's `--data DIR` also in `DIR/azureml.json` (written at most every half second and on
shutdown), so a restart keeps resources, keys and operations in flight (they finish on their schedule).
"""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.standin_state import StateFile

log = logging.getLogger("azureml.state")


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode()


class Operation(BaseModel):
    id: str
    kind: str  # endpoint.create|update|patch|delete|keys, deployment.create|update|patch|delete
    endpoint: str
    deployment: str | None = None
    status: str = "InProgress"  # InProgress -> Succeeded | Failed | Canceled
    start_time: str
    end_time: str | None = None
    due: float  # unix time at which it finishes
    error: dict[str, Any] | None = None
    error_status: int = 400
    payload: dict[str, Any] = Field(default_factory=dict)
    result: str = "resource"  # what its Location answers when it succeeded: the resource, or nothing


class Endpoint(BaseModel):
    name: str
    location: str
    tags: dict[str, Any] = Field(default_factory=dict)
    identity: dict[str, Any] | None = None
    kind: str | None = None
    sku: dict[str, Any] | None = None
    auth_mode: str = "Key"
    description: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traffic: dict[str, int] = Field(default_factory=dict)
    mirror_traffic: dict[str, int] = Field(default_factory=dict)
    public_network_access: str = "Enabled"
    provisioning_state: str = "Creating"
    primary_key: str = Field(default_factory=new_key)
    secondary_key: str = Field(default_factory=new_key)
    system_data: dict[str, Any] = Field(default_factory=dict)
    operation: str | None = None  # the operation holding this endpoint (one mutating operation at a time)


class Deployment(BaseModel):
    endpoint: str
    name: str
    location: str
    tags: dict[str, Any] = Field(default_factory=dict)
    identity: dict[str, Any] | None = None
    kind: str | None = None
    sku: dict[str, Any] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)  # as given (model, instanceType, probes, ...)
    provisioning_state: str = "Creating"
    serving: str | None = None  # the model document (JSON) the deployment serves, once provisioned
    serving_model: str | None = None  # the model version id it serves
    pending: dict[str, Any] | None = None  # what an update in flight will apply
    logs: dict[str, list[str]] = Field(default_factory=dict)  # container -> lines
    system_data: dict[str, Any] = Field(default_factory=dict)

    @property
    def instance_count(self) -> int:
        return int((self.sku or {}).get("capacity") or 1)


class ModelVersion(BaseModel):
    name: str
    version: str
    properties: dict[str, Any]
    system_data: dict[str, Any] = Field(default_factory=dict)


class Job(BaseModel):
    name: str
    properties: dict[str, Any]
    status: str = "NotStarted"
    next_at: float = 0.0  # when the status moves on
    training_done: bool = False
    failure: str | None = None
    metrics: dict[str, Any] | None = None
    system_data: dict[str, Any] = Field(default_factory=dict)


class AmlState(BaseModel):
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    deployments: dict[str, Deployment] = Field(default_factory=dict)  # "<endpoint>/<deployment>"
    models: dict[str, ModelVersion] = Field(default_factory=dict)  # "<name>/<version>"
    jobs: dict[str, Job] = Field(default_factory=dict)
    operations: dict[str, Operation] = Field(default_factory=dict)

    def deployments_of(self, endpoint: str) -> list[Deployment]:
        return [d for d in self.deployments.values() if d.endpoint == endpoint]


class AmlStore(StateFile):
    """The state, and its file (written by StateFile)."""

    def __init__(self, data_dir: Path | None, save_interval: float = 0.5) -> None:
        super().__init__(data_dir / "azureml.json" if data_dir else None, save_interval, log,
                         "the Azure ML stand-in's state")
        self.state = AmlState()

    def load(self) -> None:
        if self.path is not None and self.path.exists():
            self.state = AmlState.model_validate_json(self.path.read_bytes())

    def dump(self) -> str:
        return self.state.model_dump_json()
