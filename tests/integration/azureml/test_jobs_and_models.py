"""Command jobs (statuses, outputs the next step reads, cancel, failure), model versions, and workspace events."""

from __future__ import annotations

import json
import time

from azure.storage.blob import BlobServiceClient

from tests.integration.azureml.arm import Arm, error_code
from tests.integration.azureml.conftest import events, unique, upload
from tools.emulator.census import csv_text

EXPECTED = ["Queued", "Preparing", "Running", "Finalizing", "Completed"]


def read_output(arm: Arm, job: dict, output: str, file: str) -> bytes:
    uri = job["properties"]["outputs"][output]["uri"]
    prefix = "azureml://datastores/workspaceblobstore/paths/"
    assert uri.startswith(prefix) and uri.endswith("/")
    svc = BlobServiceClient.from_connection_string(arm.m["storage"]["connection_string"])
    blob = svc.get_blob_client(arm.aml["datastore"]["container"], uri[len(prefix):] + file)
    return bytes(blob.download_blob().readall())


def test_a_job_moves_through_the_documented_states_and_writes_model_and_metrics(arm: Arm, trained: dict):
    job = arm.get(f"/jobs/{trained['job']}")
    props = job["properties"]
    assert job["type"] == "Microsoft.MachineLearningServices/workspaces/jobs" and props["jobType"] == "Command"
    assert props["status"] == "Completed" and props["experimentName"] == "retrain"
    assert set(props["outputs"]) >= {"model", "evaluation"}
    metrics = json.loads(read_output(arm, job, "evaluation", "metrics.json"))
    assert metrics["primaryMetric"] == "AUC" and 0.7 < metrics["metrics"]["AUC"] <= 1.0
    assert metrics["label"] == {"column": "income", "positive": ">50K", "negative": "<=50K"}
    assert metrics["rows"]["total"] == 1500 and metrics["rows"]["test"] == 375
    table = read_output(arm, job, "evaluation", "evaluation.csv").decode().splitlines()
    assert table[0].split(",")[8] == "AUC" and len(table) == 2
    model = json.loads(read_output(arm, job, "model", "model.json"))
    assert model["format"] == "studio-classic-emulator/ilearner" and model["job"] == trained["job"]
    seen = [e["data"]["runStatus"] for e in events(arm.m, arm.http.verify)
            if e["eventType"].endswith("RunStatusChanged") and e["data"]["runId"] == trained["job"]]
    assert seen == EXPECTED


def test_job_events_carry_the_documented_fields(arm: Arm, trained: dict):
    mine = [e for e in events(arm.m, arm.http.verify) if e["data"].get("runId") == trained["job"]]
    done = [e for e in mine if e["eventType"] == "Microsoft.MachineLearningServices.RunCompleted"]
    assert len(done) == 1
    ev = done[0]
    assert ev["topic"] == arm.aml["workspace_id"] and ev["dataVersion"] == "" and ev["metadataVersion"] == "1"
    assert ev["subject"] == f"experiments/{ev['data']['experimentId']}/runs/{trained['job']}"
    assert set(ev["data"]) == {"experimentId", "experimentName", "runId", "runType", "runTags", "runProperties"}
    changed = [e for e in mine if e["eventType"].endswith("RunStatusChanged")]
    assert all("runStatus" in e["data"] for e in changed)


def test_cancel_moves_a_running_job_to_canceled(arm: Arm):
    url = upload(arm.m, "training-data", "azureml/cancel.csv", csv_text(300, seed=4))
    name = unique("job")
    assert arm.submit_job(name, url).status_code == 201
    r = arm.call("POST", f"/jobs/{name}/cancel")
    assert r.status_code == 202 and r.headers["Location"].split("?")[0].endswith(f"/jobs/{name}")
    assert arm.get(f"/jobs/{name}")["properties"]["status"] in ("CancelRequested", "Canceled")
    assert arm.wait_job(name)["properties"]["status"] == "Canceled"
    assert arm.call("POST", f"/jobs/{name}/cancel").status_code == 200


def test_a_job_on_bad_data_fails_with_the_reason(arm: Arm):
    url = upload(arm.m, "training-data", "azureml/bad.csv", "a,b,label\n" + "1,2,x\n" * 50)
    name = unique("job")
    assert arm.submit_job(name, url).status_code == 201
    job = arm.wait_job(name)
    assert job["properties"]["status"] == "Failed"
    assert "two classes" in job["properties"]["properties"]["azureml.failureReason"]
    missing = unique("job")
    assert arm.submit_job(missing, url.replace("bad.csv", "nothing.csv")).status_code == 201
    assert arm.wait_job(missing)["properties"]["status"] == "Failed"


def test_job_requests_are_checked(arm: Arm):
    r = arm.call("PUT", f"/jobs/{unique('job')}", {"properties": {"jobType": "Sweep"}})
    assert r.status_code == 400 and error_code(r) == "BadArgument"
    r = arm.submit_job(unique("job"), "https://elsewhere.example/data.csv")
    assert r.status_code == 400 and error_code(r) == "BadArgument"
    r = arm.submit_job(unique("job"), "azureml://datastores/otherstore/paths/x.csv")
    assert r.status_code == 400 and "otherstore" in r.json()["error"]["message"]
    assert arm.call("GET", "/jobs/no-such-job").status_code == 404
    assert any(j["name"] for j in arm.get("/jobs")["value"])


def test_model_versions_register_once_and_raise_model_registered(arm: Arm, trained: dict):
    mv = arm.get(f"/models/census/versions/{trained['job']}")
    assert mv["id"] == trained["model"] and mv["name"] == trained["job"]
    assert mv["properties"]["modelUri"] == f"azureml://jobs/{trained['job']}/outputs/model"
    assert mv["properties"]["modelType"] == "CustomModel" and mv["properties"]["tags"] == {"t": "1"}
    assert trained["job"] in [v["name"] for v in arm.get("/models/census/versions")["value"]]
    again = arm.register_model("census", trained["job"], f"azureml://jobs/{trained['job']}/outputs/model")
    assert again.status_code == 200
    other = arm.register_model("census", trained["job"], "azureml://datastores/workspaceblobstore/paths/x/")
    assert other.status_code == 409 and error_code(other) == "Conflict"
    r = arm.register_model("census", "9", "ftp://nowhere/model")
    assert r.status_code == 400 and error_code(r) == "BadArgument"
    registered = [e for e in events(arm.m, arm.http.verify)
                  if e["eventType"] == "Microsoft.MachineLearningServices.ModelRegistered"
                  and e["subject"] == f"models/census:{trained['job']}"]
    assert len(registered) == 1
    assert registered[0]["data"] == {"ModelName": "census", "ModelVersion": trained["job"],
                                     "ModelTags": {"t": "1"}, "ModelProperties": {}}


def test_realistic_timing_is_minutes(arm: Arm):
    from tools.azureml.config import REALISTIC

    assert REALISTIC.deployment_create >= 300 and REALISTIC.retry_after >= 10
    started = time.monotonic()
    assert arm.get("")  # the suite's emulator runs the fast preset
    assert time.monotonic() - started < 5


def test_workspace_events_reach_an_event_grid_subscription(arm: Arm, trained: dict):
    import requests

    from tests.integration.emulator.webhook import WebhookReceiver

    hook = WebhookReceiver()
    admin = arm.m["admin_url"]
    try:
        sub = requests.post(f"{admin}/storage-events/subscriptions", timeout=10, verify=arm.http.verify, json={
            "name": "azureml-events", "endpoint": hook.url,
            "event_types": ["Microsoft.MachineLearningServices.ModelRegistered"]}).json()
        version = unique("v")
        assert arm.register_model("hooked", version, f"azureml://jobs/{trained['job']}/outputs/model") \
            .status_code == 201
        got = hook.wait_for(lambda e: e["subject"] == f"models/hooked:{version}", timeout=15)
        assert got[0]["eventType"] == "Microsoft.MachineLearningServices.ModelRegistered"
        assert hook.headers[0]["aeg-event-type"] == "Notification" and hook.validations == 1
        requests.delete(f"{admin}/storage-events/subscriptions/{sub['id']}", timeout=10, verify=arm.http.verify)
    finally:
        hook.close()
