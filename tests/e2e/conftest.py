"""End-to-end fixtures: the whole local stack as separate processes (Azurite, the emulator with its storage-events
source subscribed to the app's webhooks, the function app under devhost) and a client that uses only public
surfaces: the app's HTTP API, the storage account, and the service's own APIs as the emulator serves them - Studio's
(target kind classic) or the Azure ML workspace's ARM routes and scoring URI (kind azureml)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from tests.conftest import RUNS_DIR, remember_secrets
from tools.localdev import studio, workspace
from tools.localdev.stack import Stack

SAMPLE_ROW = {"age": "39", "workclass": "State-gov", "fnlwgt": "77516", "education": "Bachelors",
              "education-num": "13", "marital-status": "Never-married", "occupation": "Adm-clerical",
              "relationship": "Not-in-family", "race": "White", "sex": "Male", "capital-gain": "2174",
              "capital-loss": "0", "hours-per-week": "40", "native-country": "United-States"}


class Client:
    def __init__(self, stack: Stack) -> None:
        assert stack.emulator is not None and stack.azurite is not None
        self.stack = stack
        self.api = f"{stack.functions_url}/api"
        self.m = stack.emulator.manifest
        self.http = requests.Session()
        # In identity mode Azurite and the emulator serve HTTPS with the stack's own CA.
        self.verify: Any = str(stack.tls.ca) if stack.tls else True
        self.http.verify = self.verify
        self.http.trust_env = False  # else a REQUESTS_CA_BUNDLE in the environment overrides `verify`
        self.blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string,
                                                              connection_verify=self.verify)
        self.kind = stack.target
        self.ws = workspace.Workspace(self.m, self.http) if self.kind == "azureml" else None

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, f"{self.api}/{path}", timeout=120, **kw)

    def new_endpoint(self, prefix: str = "e2e") -> str:
        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        resp = self.call("POST", "endpoints", json={"name": name, "description": "e2e"})
        assert resp.status_code == 201, resp.text
        return name

    def upload(self, container: str, name: str, data: bytes) -> None:
        self.blobs.get_blob_client(container, name).upload_blob(data, overwrite=True)

    def exists(self, container: str, name: str) -> bool:
        return bool(self.blobs.get_blob_client(container, name).exists())

    def read(self, container: str, name: str) -> bytes:
        return bytes(self.blobs.get_blob_client(container, name).download_blob().readall())

    def studio_endpoint(self, name: str) -> dict[str, Any]:
        return studio.get_endpoint(self.m, name, self.http)

    def serving(self, name: str) -> str:
        """The model the endpoint serves: the classic endpoint's RelativeLocation; on Azure ML the path the model
        version of the deployment with the most traffic was registered from (workspace.NO_MODEL for none)."""
        if self.ws is not None:
            return self.ws.serving(name)
        return studio.serving(self.studio_endpoint(name))

    def score(self, name: str) -> float:
        if self.ws is not None:
            return self.ws.score(name, [SAMPLE_ROW])[0][0]
        return studio.score(self.studio_endpoint(name), [SAMPLE_ROW], self.http)[0]

    def traffic(self, name: str) -> dict[str, int]:
        """An Azure ML endpoint's traffic, deployment -> percent (as ARM shows it)."""
        assert self.ws is not None
        return self.ws.traffic(name)

    def deployments(self, name: str) -> dict[str, dict[str, Any]]:
        assert self.ws is not None
        return self.ws.deployments(name)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        got = self.http.get(f"{self.m['admin_url']}/eventgrid/topics/retrain/events", timeout=30).json()
        return [e["event"] for e in got if event_type is None or e["event"]["type"] == f"Retrain.{event_type}"]

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; host log:\n{self.stack.host_log_tail(30)}")
            time.sleep(0.2)


# The Azure ML stand-in's operations a little faster than its `fast` default (as tests/support/azureml.py has them).
AML_TIMES = ["--azureml-time", "deployment_create=0.4", "--azureml-time", "deployment_update=0.3",
             "--azureml-time", "endpoint_create=0.2", "--azureml-time", "endpoint_update=0.2"]
NEVER = "0 0 0 1 1 *"  # a reconcile schedule that does not fire during a test (once a year)


def host_environment(stack: Stack) -> dict[str, str]:
    """The function host's environment as the process has it (Linux: /proc)."""
    assert stack.host_proc is not None
    raw = Path(f"/proc/{stack.host_proc.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def start_stack(name: str, propagation_seconds: float = 0.0, identity: bool = False, target: str = "classic",
                **overrides: str) -> Stack:
    """A stack for the story tests; the model switch is instant unless a test asks for the real service's delay
    (the verification under a delay is tested in tests/integration/library/test_hostile.py)."""
    workdir = RUNS_DIR / f"e2e-{name}-{uuid.uuid4().hex[:6]}"
    stack = Stack(Path(workdir), use_func=False, settings_overrides=dict(overrides),
                  propagation_seconds=propagation_seconds, identity=identity, target=target,
                  emulator_args=AML_TIMES if target == "azureml" else []).start()
    assert stack.emulator is not None
    remember_secrets(stack.emulator.manifest)
    return stack


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    stack = start_stack("main", RETRAIN_JOB_POLL_SECONDS="0.2")
    try:
        yield Client(stack)
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def aml_client() -> Iterator[Client]:
    """A stack whose app retrains the Azure ML stand-in's workspace, in identity mode as in Azure (no key anywhere);
    reconcile does not run by itself, so what a test sees went through the workspace's events."""
    stack = start_stack("aml", identity=True, target="azureml", RETRAIN_RECONCILE_SCHEDULE=NEVER)
    try:
        yield Client(stack)
    finally:
        stack.stop()


@pytest.fixture(params=["classic", "azureml"])
def any_client(request: pytest.FixtureRequest) -> Client:
    """The module's stack of either kind of target (`client` or `aml_client`): for the promises both keep."""
    found: Client = request.getfixturevalue("client" if request.param == "classic" else "aml_client")
    return found
