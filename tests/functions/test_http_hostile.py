"""The HTTP API under hostile input and failing dependencies: a JSON error with a fitting status, within the
front end's limits, never a stack trace (issue 9)."""

from __future__ import annotations

import time
import uuid

import pytest

from blueprints import http_api
from shared.records import BlobRef, Run
from tests.functions.conftest import call_http
from tools.emulator.census import csv_text

INITIAL_MODEL = BlobRef("experimentoutput", "initial/census-model.ilearner")


@pytest.fixture
def app(wire):
    return lambda **overrides: wire(**{"RETRAIN_ENDPOINTS": "*", **overrides})


def test_deeply_nested_json_is_a_400_not_a_500(app):
    app()
    body = ("[" * 20_000 + "]" * 20_000).encode()  # within the size limit, far past any parser's depth
    answer = call_http(http_api.endpoints_create, "POST", "endpoints", body,
                       headers={"Content-Type": "application/json"})
    assert (answer.status, answer.code) == (400, "InvalidJson")


def test_an_upload_under_an_existing_name_is_a_409_and_the_file_is_kept(app):
    h = app()
    name = f"{h.new_endpoint('up')}/data-{uuid.uuid4().hex[:6]}.csv"
    first = csv_text(400, seed=1).encode()
    answer = call_http(http_api.retrain, "POST", "retrain", first, params={"name": name},
                       headers={"Content-Type": "text/csv"})
    assert answer.status in (200, 202), answer.text
    answer = call_http(http_api.retrain, "POST", "retrain", b"age\n1\n", params={"name": name},
                       headers={"Content-Type": "text/csv"})
    assert (answer.status, answer.code) == (409, "BlobExists")
    assert h.app.storage.read_bytes(BlobRef("training-data", name)) == first


def test_a_patch_throttled_past_the_short_budget_answers_503_with_retry_after_quickly(app):
    h = app(RETRAIN_HTTP_BACKOFF_SECONDS="0.01")
    name = h.new_endpoint("thr")
    model = BlobRef("models", f"hand/{name}.ilearner")
    h.put(model, h.app.storage.read_bytes(INITIAL_MODEL))
    h.fault(route="management.patch_endpoint", status=429, retry_after=25, count=100)
    started = time.monotonic()
    answer = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model",
                       {"model": model.path, "force": True}, route_params={"name": name})
    took = time.monotonic() - started
    assert (answer.status, answer.code) == (503, "DeploymentPending"), answer.text
    assert answer.headers["Retry-After"] and took < 60  # not the background budget's minutes of sleeping
    assert h.serving(name) != model.path


def test_patching_the_model_an_endpoint_serves_is_unchanged(app):
    h = app()
    name = h.new_endpoint("same")
    model = BlobRef("models", f"hand/{name}.ilearner")
    h.put(model, h.app.storage.read_bytes(INITIAL_MODEL))
    first = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model",
                      {"model": model.path, "force": True}, route_params={"name": name})
    assert first.status == 200 and first.json["outcome"] == "Deployed"
    again = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model",
                      {"model": model.path, "force": True}, route_params={"name": name})
    assert again.status == 200 and again.json["outcome"] == "Unchanged"


def test_an_endpoint_held_by_another_deployment_is_a_409_endpoint_busy(app):
    h = app(RETRAIN_INTERACTIVE_WAIT_SECONDS="0.5")
    name = h.new_endpoint("busy")
    model = BlobRef("models", f"hand/{name}.ilearner")
    h.put(model, h.app.storage.read_bytes(INITIAL_MODEL))
    h.app.ledger.acquire("default", name, "someone-else", seconds=60)
    answer = call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model",
                       {"model": model.path, "force": True}, route_params={"name": name})
    assert (answer.status, answer.code) == (409, "EndpointBusy")


def test_an_unreachable_storage_account_is_a_503_within_seconds(monkeypatch, harness):
    from shared.composition import Retraining
    from shared.settings import load_settings
    from tools.localdev.ports import free_port

    h = harness()
    dead = free_port()  # nothing listens there
    env = {"AzureWebJobsStorage": f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
                                  f"{h.app.storage.account_key};BlobEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;"
                                  f"TableEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;",
           "RETRAIN_BES_URL": h.manifest["training_service"]["api_location"], "RETRAIN_BES_KEY": "k" * 12,
           "RETRAIN_MANAGEMENT_URL": h.settings.targets[0].management_url, "RETRAIN_MANAGEMENT_KEY": "k" * 12,
           "RETRAIN_RESOURCE_NAME": "r"}
    app = Retraining(load_settings(env), interactive=True)
    monkeypatch.setattr(http_api, "retraining_for_http", lambda: app)
    started = time.monotonic()
    answer = call_http(http_api.retrain, "POST", "retrain", csv_text(200, seed=3).encode(),
                       params={"name": "t/x.csv"}, headers={"Content-Type": "text/csv"})
    assert (answer.status, answer.code) == (503, "StorageUnavailable") and answer.headers["Retry-After"]
    assert time.monotonic() - started < 60  # an answer, not the SDK's minutes of retries


# ---- strict inputs (issue 21) ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("handler", "path", "params"), [
    (http_api.retrain, "retrain", {"name": "acme/q.csv", "endpoints": "*", "dryrun": "true"}),  # misspelt: it trained
    (http_api.retrain, "retrain", {"name": "acme/q.csv", "endpoints": "*", "dryRun": "1"}),  # not a flag: it trained
    (http_api.retrain, "retrain", {"name": "acme/q.csv", "endpoints": "*", "dryRun": "yes"}),
    (http_api.runs_list, "runs", {"limit": "5", "colour": "red"}),
    (http_api.endpoints_list, "endpoints", {"targt": "default"}),
    (http_api.health, "health", {"verbose": "true"}),
])
def test_unknown_or_malformed_query_parameters_are_400_and_nothing_happens(app, handler, path, params):
    h = app()
    body, headers = (csv_text(300, seed=3).encode(), {"Content-Type": "text/csv"}) if handler is http_api.retrain \
        else (None, None)
    answer = call_http(handler, "GET" if body is None else "POST", path, body, params=params, headers=headers)
    assert (answer.status, answer.code) == (400, "InvalidRequest"), answer.text
    assert "this request takes" in answer.json["error"]["message"]
    assert not h.app.storage.exists(BlobRef("training-data", "acme/q.csv"))


def test_a_function_key_in_the_query_is_not_an_unknown_parameter(app):
    app()
    answer = call_http(http_api.runs_list, "GET", "runs", params={"code": "a-function-key", "limit": "1"})
    assert answer.status == 200, answer.text


@pytest.mark.parametrize(("handler", "path", "body"), [
    (http_api.endpoints_patch_model, "endpoints/x/model", {"model": "models/hand/x.ilearner", "force": "yes"}),
    (http_api.endpoints_patch_model, "endpoints/x/model", {"model": "models/hand/x.ilearner", "force": 1}),
    (http_api.retrain, "retrain", {"blob": "training-data/acme/x.csv", "dryRun": "true"}),
    (http_api.endpoints_create, "endpoints", {"name": "flagged", "maxConcurrentCalls": "8"}),
])
def test_a_flag_or_number_of_the_wrong_json_type_is_400(app, handler, path, body):
    app()
    answer = call_http(handler, "POST", path, body, route_params={"name": "x"})
    assert (answer.status, answer.code) == (400, "InvalidRequest"), answer.text


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b"x" * 217_407, {}, 415),  # a CSV without a Content-Type: was "the JSON body is 217407 bytes"
    (csv_text(20, seed=1).encode(), {}, 415),  # small: was "the body is not valid JSON"
    (csv_text(20, seed=1).encode(), {"Content-Type": "application/x-www-form-urlencoded"}, 415),  # curl -d
    (csv_text(20, seed=1).encode(), {"Content-Type": "application/json"}, 400),
    (b"{" + b" " * 70_000 + b"}", {"Content-Type": "application/json"}, 413),
])
def test_a_content_type_mistake_is_answered_naming_the_right_type(app, body, headers, status):
    app()
    answer = call_http(http_api.retrain, "POST", "retrain", body, params={"name": "acme/ct.csv"}, headers=headers)
    assert answer.status == status, answer.text
    assert "text/csv" in answer.json["error"]["message"], answer.text


def test_creating_the_default_endpoint_is_refused_before_anything_is_written(app):
    h = app()
    before = h.app.ledger.history("default", "default")
    answer = call_http(http_api.endpoints_create, "POST", "endpoints", {"name": "default"})
    assert (answer.status, answer.code) == (409, "DefaultEndpoint"), answer.text
    assert h.app.ledger.history("default", "default") == before and h.app.ledger.current("default", "default") is None


# ---- an approval answers how it went (issue 21: 200 whatever the outcome) ------------------------------------------
@pytest.mark.parametrize(("ended", "status", "code"), [
    ("Deployed", 200, None), ("Deploying", 202, None), ("Superseded", 409, "Superseded"),
    ("Cancelled", 409, "Cancelled"), ("RolledBack", 422, "ModelNotServable"),
    ("PartiallyDeployed", 502, "PartiallyDeployed"), ("Failed", 502, "DeploymentFailed"),
])
def test_an_approval_answers_with_a_status_that_fits_how_the_deployment_went(app, monkeypatch, ended, status, code):
    h = app()
    run = Run(id="r" + uuid.uuid4().hex[:8], target="default", status=ended, endpoints=["acme"],
              error=None if ended in ("Deployed", "Deploying") else f"it ended {ended}")
    monkeypatch.setattr(h.app.approvals, "approve", lambda run_id, caller: run)
    answer = call_http(http_api.runs_approve, "POST", f"runs/{run.id}/approve", route_params={"id": run.id})
    assert answer.status == status, answer.text
    if code is None:
        assert answer.json["id"] == run.id and answer.json["status"] == ended
        assert status == 200 or answer.headers["Location"] == f"/api/runs/{run.id}"
    else:
        assert answer.code == code and answer.json["error"]["run"]["status"] == ended


def test_an_endpoints_answer_pages_its_history_and_refuses_a_bad_cursor(app):
    h = app()
    name = h.new_endpoint("page")
    answer = call_http(http_api.endpoints_get, "GET", f"endpoints/{name}", route_params={"name": name},
                       params={"historyLimit": "1"})
    assert answer.status == 200 and len(answer.json["history"]) == 1 and answer.json["historyTotal"] == 1
    assert answer.json["historyNext"] is None
    for params in ({"historyLimit": "0"}, {"historyLimit": "many"}, {"before": "yesterday"}):
        bad = call_http(http_api.endpoints_get, "GET", f"endpoints/{name}", route_params={"name": name},
                        params=params)
        assert (bad.status, bad.code) == (400, "InvalidRequest"), bad.text
