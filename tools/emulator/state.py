"""The emulator's state: workspace, web services, endpoints, jobs, active models; JSON persistence.

State lives in memory. With `--data DIR` it is written to `DIR/state.json` (atomically, at most every
`save_interval` seconds and on shutdown) and model documents to `DIR/models/<sha256>.json`, so a restart keeps
services, endpoints, keys, active models and jobs. URLs (ApiLocation, HelpLocation) are derived from the address
the server listens on now, never stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.emulator.learner import Model, ModelError, load_model
from tools.standin_state import StateFile

log = logging.getLogger("emulator.state")

JobStatus = Literal["NotStarted", "Running", "Failed", "Cancelled", "Finished"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


class Location(BaseModel):
    BaseLocation: str
    RelativeLocation: str
    SasBlobToken: str | None = None


class Resource(BaseModel):
    Name: str
    Kind: str = "TrainedModel"
    Location: Location


class PendingModel(BaseModel):
    sha: str
    activate_at: float  # unix time


class EndpointState(BaseModel):
    name: str
    guid: str = Field(default_factory=new_id)
    description: str = ""
    creation_time: str = Field(default_factory=now_iso)
    primary_key: str = Field(default_factory=new_key)
    secondary_key: str = Field(default_factory=new_key)
    version: str = Field(default_factory=now_iso)
    prevent_update: bool = False
    max_concurrent_calls: int = 4
    diagnostics_trace_level: str = "None"
    throttle_level: str = "Low"
    resources: list[Resource] = Field(default_factory=list)
    active_model: str | None = None  # sha256 of the active model document
    pending_model: PendingModel | None = None


class ServiceState(BaseModel):
    id: str = Field(default_factory=new_id)
    name: str
    description: str = ""
    kind: Literal["training", "predictive"]
    creation_time: str = Field(default_factory=now_iso)
    version: str = Field(default_factory=now_iso)
    default_endpoint: str = "default"
    resource_name: str | None = None  # the trained-model resource of a predictive service
    endpoints: dict[str, EndpointState] = Field(default_factory=dict)


class JobState(BaseModel):
    id: str = Field(default_factory=new_id)
    service_id: str
    endpoint: str
    status: JobStatus = "NotStarted"
    created: str = Field(default_factory=now_iso)
    started: str | None = None
    ended: str | None = None
    request: dict[str, Any]  # the normalised submit body (holds connection strings: never logged)
    results: dict[str, dict[str, str]] | None = None  # output -> {"connection_string"|"base","relative"}
    details: str | None = None


class StorageWatchState(BaseModel):
    seen: dict[str, str] = Field(default_factory=dict)  # "<container>/<blob>" -> ETag
    subscriptions: list[dict[str, Any]] = Field(default_factory=list)


class WorkspaceState(BaseModel):
    id: str = Field(default_factory=new_id)
    token: str = Field(default_factory=new_key)
    tier: Literal["standard", "free"] = "standard"
    services: dict[str, ServiceState] = Field(default_factory=dict)
    jobs: dict[str, JobState] = Field(default_factory=dict)
    topics: dict[str, dict[str, str]] = Field(default_factory=dict)  # name -> {"key", "schema"}
    storage_watch: StorageWatchState = Field(default_factory=StorageWatchState)


class Store(StateFile):
    """Holds the workspace state, the model documents and their loaded forms; persists when given a folder."""

    def __init__(self, data_dir: Path | None, save_interval: float = 0.5) -> None:
        super().__init__(data_dir / "state.json" if data_dir else None, save_interval, log, "the emulator state")
        self.data_dir = data_dir
        self.ws = WorkspaceState()
        self.model_docs: dict[str, bytes] = {}
        self._loaded: dict[str, Model | ModelError] = {}
        self._guids: dict[str, tuple[str, str]] = {}

    # ---- persistence (the file's writing: StateFile) -----------------------------------------------------
    @property
    def state_file(self) -> Path | None:
        return self.path

    def dump(self) -> str:
        return self.ws.model_dump_json()

    def load(self) -> bool:
        """Load persisted state; False when there is none (first start)."""
        if self.state_file is None or not self.state_file.exists():
            return False
        self.ws = WorkspaceState.model_validate_json(self.state_file.read_bytes())
        assert self.data_dir is not None
        for path in (self.data_dir / "models").glob("*.json"):
            self.model_docs[path.stem] = path.read_bytes()
        self.rebuild_index()
        return True

    def start_saver(self) -> None:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "models").mkdir(exist_ok=True)
        super().start_saver()

    # ---- models ------------------------------------------------------------------------------------------
    def add_model(self, document: bytes) -> str:
        """Store a model document (bytes as downloaded); return its sha256."""
        sha = hashlib.sha256(document).hexdigest()
        if sha not in self.model_docs:
            self.model_docs[sha] = document
            if self.data_dir is not None:
                path = self.data_dir / "models" / f"{sha}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(document)
        return sha

    def model(self, sha: str) -> Model:
        """The loaded model; raises ModelError when the document cannot be loaded."""
        found = self._loaded.get(sha)
        if found is None:
            try:
                found = load_model(json.loads(self.model_docs[sha]))
            except ModelError as exc:
                found = exc
            except (KeyError, ValueError) as exc:
                found = ModelError(f"the model document cannot be read: {exc}")
            self._loaded[sha] = found
        if isinstance(found, ModelError):
            raise found
        return found

    # ---- lookups -----------------------------------------------------------------------------------------
    def service(self, service_id: str) -> ServiceState | None:
        return self.ws.services.get(service_id)

    def endpoint_by_guid(self, guid: str) -> tuple[ServiceState, EndpointState] | None:
        found = self._guids.get(guid)
        if found is None:
            return None
        svc = self.ws.services.get(found[0])
        ep = svc.endpoints.get(found[1]) if svc else None
        return (svc, ep) if svc and ep else None

    def index_endpoint(self, svc: ServiceState, ep: EndpointState) -> None:
        self._guids[ep.guid] = (svc.id, ep.name)

    def unindex_endpoint(self, ep: EndpointState) -> None:
        self._guids.pop(ep.guid, None)

    def rebuild_index(self) -> None:
        self._guids = {e.guid: (s.id, e.name) for s in self.ws.services.values() for e in s.endpoints.values()}

    def active_model_sha(self, ep: EndpointState, now: float) -> str | None:
        """The endpoint's active model, switching to a pending one whose propagation delay has passed."""
        if ep.pending_model is not None and now >= ep.pending_model.activate_at:
            ep.active_model = ep.pending_model.sha
            ep.pending_model = None
            self.mark_dirty()
        return ep.active_model
