"""The Azure ML stand-in's contract suite runs against its own emulator process (HTTPS, as ARM is; fast timings),
and a second one with small limits for the limit and fault tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from tests.integration.azureml.arm import Arm
from tests.support.azureml import FAST
from tools.emulator.census import csv_text
from tools.localdev.emulator import EmulatorProcess
from tools.localdev.tls import LocalTls


@pytest.fixture(scope="session")
def arm(aml_emulator: EmulatorProcess, aml_tls: LocalTls) -> Arm:
    return Arm(aml_emulator.manifest, verify=str(aml_tls.ca))


@pytest.fixture(scope="session")
def limited_emulator(start_emulator: Callable[..., EmulatorProcess], aml_tls: LocalTls) -> EmulatorProcess:
    return start_emulator("--tls-cert", str(aml_tls.cert), "--tls-key", str(aml_tls.key), *FAST,
                          "--azureml-limit", "deployments_per_endpoint=2", "--azureml-instance-quota", "6",
                          "--azureml-deployment-fault", "deployment=flagged*,fail_after=0.2,code=ImageBuildFailure")


@pytest.fixture(scope="session")
def limited(limited_emulator: EmulatorProcess, aml_tls: LocalTls) -> Arm:
    return Arm(limited_emulator.manifest, verify=str(aml_tls.ca))


def upload(manifest: dict, container: str, name: str, data: str | bytes) -> str:
    """Put a blob on the workspace's storage account; return its URL."""
    svc = BlobServiceClient.from_connection_string(manifest["storage"]["connection_string"])
    with contextlib.suppress(ResourceExistsError):
        svc.create_container(container)
    blob = svc.get_blob_client(container, name)
    blob.upload_blob(data, overwrite=True)
    return str(blob.url)


def census_csv_url(arm: Arm, rows: int = 1500, seed: int = 3) -> str:
    return upload(arm.m, "training-data", f"azureml/census-{rows}-{seed}.csv", csv_text(rows, seed=seed))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def trained(arm: Arm) -> dict:
    """One census job trained and registered as a model version: (job, model id) for the deployment tests."""
    url = census_csv_url(arm)
    name = unique("job")
    r = arm.submit_job(name, url)
    assert r.status_code == 201, r.text
    job = arm.wait_job(name)
    assert job["properties"]["status"] == "Completed", job
    r = arm.register_model("census", name, f"azureml://jobs/{name}/outputs/model")
    assert r.status_code == 201, r.text
    return {"job": name, "model": arm.model_id("census", name), "data_url": url}


def events(manifest: dict, verify) -> list[dict]:
    r = requests.get(f"{manifest['admin_url']}/eventgrid/topics/azureml/events", timeout=10, verify=verify)
    r.raise_for_status()
    return [e["event"] for e in r.json()]


def census_rows(n: int = 5, seed: int = 9) -> dict:
    import csv
    import io

    reader = csv.reader(io.StringIO(csv_text(n, seed=seed)))
    header = next(reader)
    rows = list(reader)
    label = header.index("income")
    return {"input_data": {"columns": [h for i, h in enumerate(header) if i != label],
                           "data": [[v for i, v in enumerate(r) if i != label] for r in rows]}}
