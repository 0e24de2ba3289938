"""End-to-end fixtures: the whole local stack as separate processes (Azurite, the emulator with its storage-events
source subscribed to the app's webhooks, the function app under devhost) and a client that uses only public
surfaces: the app's HTTP API, the storage account, and Studio's own APIs (as the emulator serves them)."""

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
from tools.localdev import studio
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
        return studio.serving(self.studio_endpoint(name))

    def score(self, name: str) -> float:
        return studio.score(self.studio_endpoint(name), [SAMPLE_ROW], self.http)[0]

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


def start_stack(name: str, propagation_seconds: float = 0.0, identity: bool = False, **overrides: str) -> Stack:
    """A stack for the story tests; the model switch is instant unless a test asks for the real service's delay
    (the verification under a delay is tested in tests/integration/library/test_hostile.py)."""
    workdir = RUNS_DIR / f"e2e-{name}-{uuid.uuid4().hex[:6]}"
    stack = Stack(Path(workdir), use_func=False, settings_overrides=dict(overrides),
                  propagation_seconds=propagation_seconds, identity=identity).start()
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
