"""The library wired to the shared emulator and Azurite (real HTTP, no fakes), for the integration and entry-point
tests: `harness(**setting_overrides)` builds one."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from shared.composition import Retraining
from shared.records import BlobRef
from shared.settings import load_settings
from tools.emulator.census import csv_text
from tools.localdev.appsettings import settings_from_manifest

SMOKE_ROW = {"age": "39", "workclass": "State-gov", "fnlwgt": "77516", "education": "Bachelors",
             "education-num": "13", "marital-status": "Never-married", "occupation": "Adm-clerical",
             "relationship": "Not-in-family", "race": "White", "sex": "Male", "capital-gain": "2174",
             "capital-loss": "0", "hours-per-week": "40", "native-country": "United-States"}


class Harness:
    def __init__(self, manifest: dict[str, Any], overrides: dict[str, str]) -> None:
        self.manifest = manifest
        env = settings_from_manifest(manifest, **{
            "RETRAIN_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}", "RETRAIN_HTTP_BACKOFF_SECONDS": "0.05",
            "RETRAIN_HTTP_MAX_BACKOFF_SECONDS": "2", "RETRAIN_JOB_POLL_SECONDS": "0.2",
            "RETRAIN_SMOKE_ROW": json.dumps(SMOKE_ROW), "RETRAIN_VERIFY_SWITCH_SECONDS": "1",
            "RETRAIN_VERIFY_POLL_SECONDS": "0.1", **overrides})
        self.settings = load_settings(env)
        self.app = Retraining(self.settings)
        self.app.ensure_storage()
        self.admin = manifest["admin_url"]

    def mgmt(self) -> Any:
        return self.app.studio.management(self.settings.targets[0])

    def new_endpoint(self, prefix: str = "t") -> str:
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        self.app.operations.add_endpoint(name, "integration test")
        return name

    def put(self, ref: BlobRef, data: bytes) -> None:
        """Write a blob as a user (or a test) does: whatever was there is replaced."""
        self.app.storage.blob.get_blob_client(ref.container, ref.name).upload_blob(data, overwrite=True)

    def upload_data(self, name: str, rows: int = 2000, seed: int = 1, drift: float = 0.0,
                    text: str | None = None) -> BlobRef:
        ref = BlobRef(self.settings.data_container, name)
        self.put(ref, (text if text is not None else csv_text(rows, seed, drift)).encode())
        return ref

    def score(self, endpoint: str) -> float:
        ep = self.mgmt().get_endpoint(endpoint)
        rows = self.app.studio.scoring(ep.ApiLocation, ep.PrimaryKey).score([SMOKE_ROW])
        return float(rows[0]["Scored Probabilities"])

    def serving(self, endpoint: str) -> str:
        ep = self.mgmt().get_endpoint(endpoint)
        res = ep.resource(self.settings.targets[0].resource_name)
        return str((res.Location or {})["RelativeLocation"])

    def wait_job(self, job_id: str, timeout: float = 60) -> None:
        bes = self.app.studio.bes(self.settings.targets[0])
        deadline = time.monotonic() + timeout
        while bes.get(job_id).StatusCode in ("NotStarted", "Running"):
            assert time.monotonic() < deadline, "job did not finish"
            time.sleep(0.1)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        got = requests.get(f"{self.admin}/eventgrid/topics/retrain/events", timeout=10).json()
        events = [e["event"] for e in got]
        return [e for e in events if event_type is None or e["type"] == f"Retrain.{event_type}"]

    def jobs_for(self, blob_path: str) -> list[dict[str, Any]]:
        return [j for j in requests.get(f"{self.admin}/jobs", timeout=10).json() if j["input"] == blob_path]

    def fault(self, **rule: Any) -> None:
        assert requests.post(f"{self.admin}/faults", json=rule, timeout=10).status_code == 201

    def clear_faults(self) -> None:
        requests.delete(f"{self.admin}/faults", timeout=10)


@pytest.fixture
def harness(shared_emulator) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(manifest: dict[str, Any] | None = None, **overrides: str) -> Harness:
        h = Harness(manifest or shared_emulator.manifest, overrides)
        made.append(h)
        return h

    yield make
    for h in made:
        h.clear_faults()
        h.app.close()
