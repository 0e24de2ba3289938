"""Every HTTP function called with real `azure.functions` objects (HttpRequest in, HttpResponse out), with the real
library behind it (Azurite + the emulator): successes, and each error's status and code. Every answer is checked
for secrets."""

from __future__ import annotations

import uuid

import pytest

from blueprints import http_api
from shared.records import BlobRef
from tests.functions.conftest import call_http
from tools.emulator.census import csv_text
from tools.localdev.ports import free_port

INITIAL_MODEL = BlobRef("experimentoutput", "initial/census-model.ilearner")


@pytest.fixture
def app(wire):
    """The blueprints on a harness whose top-level files go to every endpoint."""
    return lambda **overrides: wire(**{"RETRAIN_ENDPOINTS": "*", **overrides})


def hand_model(h, name: str) -> BlobRef:
    ref = BlobRef("models", f"hand/{name}.ilearner")
    h.put(ref, h.app.storage.read_bytes(INITIAL_MODEL))
    return ref


def new_name(prefix: str = "ep") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def test_health_reports_storage_and_studio(app):
    app()
    answer = call_http(http_api.health, "GET", "health")
    assert answer.status == 200 and answer.json["status"] == "ok"
    assert answer.json["checks"]["storage"]["ok"] and answer.json["checks"]["studio:default"]["ok"]


def test_health_is_503_when_studio_cannot_be_reached(app):
    dead = f"http://127.0.0.1:{free_port()}/workspaces/w/webservices/s"
    app(RETRAIN_MANAGEMENT_URL=dead, RETRAIN_HTTP_MAX_ATTEMPTS="1")
    answer = call_http(http_api.health, "GET", "health")
    assert answer.status == 503 and answer.json["status"] == "degraded"
    assert answer.json["checks"]["studio:default"]["ok"] is False and answer.json["checks"]["storage"]["ok"]


def test_create_list_and_get_an_endpoint(app):
    app()
    name = new_name()
    created = call_http(http_api.endpoints_create, "POST", "endpoints",
                        {"name": name, "description": "entry test", "throttleLevel": "High",
                         "maxConcurrentCalls": 8})
    assert created.status == 201, created.text
    assert created.headers["Location"] == f"/api/endpoints/{name}"
    assert created.json["name"] == name and created.json["throttleLevel"] == "High"
    assert created.json["maxConcurrentCalls"] == 8
    assert [d["outcome"] for d in created.json["history"]] == ["Created"]
    assert "PrimaryKey" not in created.text and "primaryKey" not in created.text
    listed = call_http(http_api.endpoints_list, "GET", "endpoints")
    assert listed.status == 200 and name in [e["name"] for e in listed.json["endpoints"]]
    got = call_http(http_api.endpoints_get, "GET", f"endpoints/{name}", route_params={"name": name})
    assert got.status == 200 and got.json["current"]["deploymentId"] == created.json["history"][0]["id"]


@pytest.mark.parametrize(("body", "headers", "status", "code"), [
    (b"{not json", {"Content-Type": "application/json"}, 400, "InvalidJson"),
    (b"[1, 2]", {"Content-Type": "application/json"}, 400, "InvalidJson"),
    ({"name": "ok-name", "colour": "red"}, None, 400, "InvalidRequest"),
    ({"description": "no name"}, None, 400, "InvalidRequest"),
    ({"name": "ok-name", "throttleLevel": "Medium"}, None, 400, "InvalidRequest"),
    ({"name": "Bad_Name"}, None, 400, "InvalidEndpointName"),
    (b"name=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "UnsupportedMediaType"),
    (b"{" + b" " * 70_000 + b"}", {"Content-Type": "application/json"}, 413, "PayloadTooLarge"),
])
def test_create_endpoint_rejects_bad_bodies(app, body, headers, status, code):
    app()
    answer = call_http(http_api.endpoints_create, "POST", "endpoints", body, headers=headers)
    assert (answer.status, answer.code) == (status, code), answer.text
    assert "Traceback" not in answer.text


def test_create_an_existing_endpoint_is_a_conflict(app):
    app()
    name = new_name()
    assert call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name}).status == 201
    again = call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    assert again.status == 409, again.text


def test_get_an_unknown_endpoint_is_404(app):
    app()
    answer = call_http(http_api.endpoints_get, "GET", "endpoints/nope", route_params={"name": "nope"})
    assert (answer.status, answer.code) == (404, "NotFound")


def test_patch_a_model_then_roll_back_to_the_creation_model(app):
    h = app()
    name = new_name()
    call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    model = hand_model(h, name)
    patched = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model",
                        {"model": model.path, "force": True}, route_params={"name": name})
    assert patched.status == 200 and patched.json["outcome"] == "Deployed", patched.text
    assert h.serving(name) == model.path
    rolled = call_http(http_api.endpoints_rollback, "POST", f"endpoints/{name}/rollback", route_params={"name": name})
    assert rolled.status == 200 and rolled.json["outcome"] == "Deployed", rolled.text
    assert h.serving(name) == "experimentoutput/initial/census-model.ilearner" or h.serving(name) != model.path
    view = call_http(http_api.endpoints_get, "GET", f"endpoints/{name}", route_params={"name": name})
    assert [d["operation"] for d in view.json["history"]] == ["rollback", "patch", "create"]


@pytest.mark.parametrize(("model", "status", "code"), [
    ("training-data/x.ilearner", 400, "OutsideContainer"),
    ("models/missing/none.ilearner", 404, "NotFound"),
    ("models/a.csv", 400, "InvalidRequest"),
    ("models/../etc/passwd.ilearner", 400, "InvalidRequest"),
])
def test_patch_model_errors(app, model, status, code):
    app()
    name = new_name()
    call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    answer = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model", {"model": model},
                       route_params={"name": name})
    assert (answer.status, answer.code) == (status, code), answer.text


def test_a_model_without_an_evaluation_needs_force(app):
    """Issue 21: it was deployed ungated with force false; the gate cannot be applied to it."""
    h = app()
    name = new_name()
    call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    model = hand_model(h, name)
    answer = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model", {"model": model.path},
                       route_params={"name": name})
    assert (answer.status, answer.code) == (409, "ModelRejected") and "no evaluation" in answer.text, answer.text
    assert h.serving(name) != model.path


def test_the_default_endpoint_is_never_patched(app):
    h = app()
    model = hand_model(h, "for-default")
    answer = call_http(http_api.endpoints_patch_model, "POST", "endpoints/default/model", {"model": model.path},
                       route_params={"name": "default"})
    assert (answer.status, answer.code) == (409, "DefaultEndpoint")


def test_a_model_the_service_refuses_is_422_and_the_endpoint_keeps_its_model(app):
    h = app()
    name = new_name()
    call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    before = h.serving(name)
    bad = BlobRef("models", f"hand/{name}-bad.ilearner")
    h.put(bad, b"this is not a model")
    answer = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model",
                       {"model": bad.path, "force": True}, route_params={"name": name})
    assert (answer.status, answer.code) == (422, "ModelNotServable"), answer.text
    assert answer.json["error"]["result"]["outcome"] == "Failed"
    assert "IncompatibleModel" in answer.json["error"]["message"]
    assert h.serving(name) == before


def test_rollback_with_nothing_earlier_is_a_conflict_and_an_unknown_target_404(app):
    app()
    name = new_name()
    call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    answer = call_http(http_api.endpoints_rollback, "POST", f"endpoints/{name}/rollback", route_params={"name": name})
    assert (answer.status, answer.code) == (409, "NothingToRollBack")
    answer = call_http(http_api.endpoints_rollback, "POST", f"endpoints/{name}/rollback", {"target": "elsewhere"},
                       route_params={"name": name})
    assert (answer.status, answer.code) == (404, "NotFound")
    answer = call_http(http_api.endpoints_rollback, "POST", f"endpoints/{name}/rollback", {"to": "op-none"},
                       route_params={"name": name})
    assert (answer.status, answer.code) == (404, "NotFound")


def test_retrain_from_a_blob_reference_and_from_a_csv_body_then_read_the_runs(app):
    h = app(RETRAIN_ENDPOINTS="", RETRAIN_CANCEL_SUPERSEDED_JOBS="false")  # two runs for one endpoint, both kept
    name = new_name()
    call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    ref = h.upload_data(f"{name}/by-ref.csv", rows=500)
    by_ref = call_http(http_api.retrain, "POST", "retrain", {"blob": ref.path})
    assert by_ref.status == 202, by_ref.text
    assert by_ref.json["status"] == "Training" and by_ref.json["endpoints"] == [name]
    assert by_ref.headers["Location"] == f"/api/runs/{by_ref.json['id']}"
    assert "claimedBy" not in by_ref.json
    again = call_http(http_api.retrain, "POST", "retrain", {"blob": ref.path})
    assert again.json["id"] == by_ref.json["id"]  # the same file and ETag: the same run, no second job
    assert len(h.jobs_for(ref.path)) == 1
    by_body = call_http(http_api.retrain, "POST", "retrain", csv_text(500, seed=3).encode(),
                        params={"name": f"{name}/uploaded.csv"}, headers={"Content-Type": "text/csv"})
    assert by_body.status == 202 and by_body.json["dataPath"] == f"training-data/{name}/uploaded.csv"
    listed = call_http(http_api.runs_list, "GET", "runs", params={"status": "Training,Trained", "limit": "100"})
    assert {by_ref.json["id"], by_body.json["id"]} <= {r["id"] for r in listed.json["runs"]}
    got = call_http(http_api.runs_get, "GET", f"runs/{by_ref.json['id']}", route_params={"id": by_ref.json["id"]})
    assert got.status == 200 and got.json["jobId"] == by_ref.json["jobId"]


def test_retrain_with_bad_data_is_422_and_the_file_is_kept_in_rejected(app):
    h = app(RETRAIN_ENDPOINTS="")
    name = new_name()
    call_http(http_api.endpoints_create, "POST", "endpoints", {"name": name})
    answer = call_http(http_api.retrain, "POST", "retrain", b"age,workclass\n39,State-gov\n",
                       params={"name": f"{name}/bad.csv"}, headers={"Content-Type": "text/csv"})
    assert (answer.status, answer.code) == (422, "TrainingDataRejected"), answer.text
    assert "MissingColumns" in answer.json["error"]["message"]
    assert answer.json["error"]["run"]["status"] == "Rejected"
    assert h.app.storage.exists(BlobRef("rejected", f"training-data/{name}/bad.csv.reason.json"))


@pytest.mark.parametrize(("body", "params", "headers", "status", "code"), [
    ({"blob": "models/x.csv"}, None, None, 400, "OutsideContainer"),
    ({"blob": "training-data/missing.csv"}, None, None, 404, "NotFound"),
    ({"blob": "training-data/../models/x.csv"}, None, None, 400, "OutsideContainer"),
    ({}, None, None, 400, "InvalidRequest"),
    (b"", None, {"Content-Type": "text/csv"}, 400, "EmptyBody"),
    (b"a,b\n1,2\n", {"name": "../escape.csv"}, {"Content-Type": "text/csv"}, 400, "InvalidRequest"),
    (b"x" * 2000, None, {"Content-Type": "text/csv"}, 413, "PayloadTooLarge"),
])
def test_retrain_errors(app, body, params, headers, status, code):
    app(RETRAIN_MAX_UPLOAD_BYTES="1000")
    answer = call_http(http_api.retrain, "POST", "retrain", body, params=params, headers=headers)
    assert (answer.status, answer.code) == (status, code), answer.text


@pytest.mark.parametrize(("params", "code"), [({"status": "Sleeping"}, "InvalidRequest"),
                                              ({"limit": "0"}, "InvalidRequest"),
                                              ({"limit": "many"}, "InvalidRequest")])
def test_runs_list_errors(app, params, code):
    app()
    answer = call_http(http_api.runs_list, "GET", "runs", params=params)
    assert (answer.status, answer.code) == (400, code)


def test_unknown_run_is_404(app):
    app()
    for run_id in ("0" * 32, "bad id!"):
        answer = call_http(http_api.runs_get, "GET", f"runs/{run_id}", route_params={"id": run_id})
        assert (answer.status, answer.code) == (404, "NotFound")


def test_an_unexpected_error_is_a_500_naming_the_invocation_without_details(app, monkeypatch):
    h = app()

    def boom(*args, **kwargs):
        raise RuntimeError("internal detail with sig=abcdef0123456789 inside")

    monkeypatch.setattr(h.app.views, "endpoints", boom)
    answer = call_http(http_api.endpoints_list, "GET", "endpoints")
    assert (answer.status, answer.code) == (500, "InternalError")
    assert "internal detail" not in answer.text and "invocation" in answer.json["error"]["message"]


def test_studio_throttling_past_the_retry_budget_is_a_503_with_retry_after(app):
    h = app(RETRAIN_HTTP_MAX_ATTEMPTS="2", RETRAIN_HTTP_BACKOFF_SECONDS="0.01")
    h.fault(route="management.list_endpoints", status=503, retry_after=7, count=2)
    answer = call_http(http_api.endpoints_list, "GET", "endpoints")
    assert (answer.status, answer.code) == (503, "UpstreamUnavailable")
    assert answer.headers["Retry-After"] == "7"


def test_a_bad_setting_is_a_500_naming_the_setting(monkeypatch):
    from shared.settings import SettingsError

    def broken():
        raise SettingsError("invalid app settings: RETRAIN_GATE_MINIMUM: Input should be a valid number")

    monkeypatch.setattr(http_api, "retraining_for_http", broken)
    answer = call_http(http_api.health, "GET", "health")
    assert (answer.status, answer.code) == (500, "ConfigurationError")
    assert "RETRAIN_GATE_MINIMUM" in answer.json["error"]["message"]
