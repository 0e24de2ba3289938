"""Safe manual actions (issue 10): the gate applies to a manual patch unless forced, and a forced deployment is
recorded with who forced it; an upload outside a tenant folder must name its endpoints; every operator action
answers which model serves now and which did before."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from blueprints import http_api
from shared.records import BlobRef
from tests.functions.conftest import call_http
from tools.emulator.census import csv_text


@pytest.fixture
def app(wire):
    return lambda **overrides: wire(**{"RETRAIN_ENDPOINTS": "", **overrides})


def trained_model(h, tenant: str) -> str:
    run = h.app.intake.accept(h.upload_data(f"{tenant}/m-{uuid.uuid4().hex[:6]}.csv", rows=1200, drift=0.8))
    h.wait_job(run.job_id)
    return str(run.model_path)


def principal(name: str, *roles: str) -> dict[str, str]:
    """The header App Service Authentication sets for a signed-in caller (and strips from client requests)."""
    claims = [{"typ": "name", "val": name}] + [{"typ": "roles", "val": r} for r in roles]
    raw = json.dumps({"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims})
    return {"x-ms-client-principal": base64.b64encode(raw.encode()).decode()}


def patch(name: str, body: dict, **headers: str):
    return call_http(http_api.endpoints_patch_model, "POST", f"endpoints/{name}/model", body,
                     route_params={"name": name}, headers=headers)


def test_a_manual_patch_below_the_gate_needs_force_and_is_recorded_as_forced_with_the_caller(app, monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")  # App Service Authentication vouches for the caller
    h = app(RETRAIN_GATE_MINIMUM="0.995")
    name = h.new_endpoint("gate")
    model = trained_model(h, name)
    refused = patch(name, {"model": model})
    assert (refused.status, refused.code) == (409, "ModelRejected") and "force" in refused.json["error"]["message"]
    assert h.serving(name) != model
    forced = patch(name, {"model": model, "force": True}, **principal("alice@contoso.com"))
    assert forced.status == 200 and forced.json["outcome"] == "Deployed", forced.text
    top = h.app.ledger.history("default", name)[0]
    assert top.forced and top.caller == "alice@contoso.com" and top.model_path == model


def test_a_model_that_passes_the_gate_is_patched_without_force_and_not_marked_forced(app):
    h = app()
    name = h.new_endpoint("pass")
    model = trained_model(h, name)
    answer = patch(name, {"model": model})
    assert answer.status == 200 and answer.json["outcome"] == "Deployed"
    top = h.app.ledger.history("default", name)[0]
    assert not top.forced and top.caller == "function-key"  # no principal vouched: a key holder


def test_every_operator_answer_says_what_serves_now_and_before(app):
    h = app()
    name = h.new_endpoint("says")
    created = h.serving(name)
    model = trained_model(h, name)
    answer = patch(name, {"model": model})
    assert (answer.json["serving"], answer.json["previous"]) == (model, created)
    again = patch(name, {"model": model})
    assert again.json["outcome"] == "Unchanged" and again.json["serving"] == again.json["previous"] == model
    back = call_http(http_api.endpoints_rollback, "POST", f"endpoints/{name}/rollback", route_params={"name": name})
    assert back.status == 200 and (back.json["serving"], back.json["previous"]) == (created, model)


def test_an_upload_outside_a_tenant_folder_must_name_its_endpoints(app):
    h = app(RETRAIN_ENDPOINTS="*")
    name = h.new_endpoint("named")
    data = csv_text(400, seed=4).encode()
    upload = f"top-{uuid.uuid4().hex[:6]}.csv"
    refused = call_http(http_api.retrain, "POST", "retrain", data, params={"name": upload},
                        headers={"Content-Type": "text/csv"})
    assert (refused.status, refused.code) == (400, "TenantRequired") and "?endpoints=" in refused.text
    assert not h.app.storage.exists(BlobRef("training-data", upload))
    accepted = call_http(http_api.retrain, "POST", "retrain", data, params={"name": upload, "endpoints": name},
                         headers={"Content-Type": "text/csv", "x-ms-client-principal-name": "bob"})  # spoofed
    assert accepted.status == 202 and accepted.json["endpoints"] == [name]
    assert accepted.json["caller"] == "function-key"  # a header the client chose is never the recorded caller
    # the choice travels with the file: the storage event's delivery routes it the same way
    props = h.app.storage.info(BlobRef("training-data", upload))
    assert props.metadata["retrainendpoints"] == name
    both = call_http(http_api.retrain, "POST", "retrain", data, params={"name": f"{name}/x.csv", "endpoints": "*"},
                     headers={"Content-Type": "text/csv"})
    assert (both.status, both.code) == (400, "TenantRequired")


def test_a_dry_run_validates_and_routes_and_starts_nothing(app):
    h = app(RETRAIN_ENDPOINTS="*")
    name = h.new_endpoint("dry")
    created = h.serving(name)
    good = h.upload_data(f"{name}/good.csv", rows=300, seed=9)
    answer = call_http(http_api.retrain, "POST", "retrain", {"blob": good.path, "dryRun": True})
    assert answer.status == 200 and answer.json["valid"] and answer.json["rows"] == 300
    assert answer.json["endpoints"] == [{"endpoint": name, "exists": True, "serving": created, "runId": None,
                                         "deploymentId": h.app.ledger.current("default", name).deployment_id}]
    bad = h.upload_data(f"{name}/bad.csv", text="age,workclass\n39,State-gov\n")
    answer = call_http(http_api.retrain, "POST", "retrain", {"blob": bad.path, "dryRun": True})
    assert answer.status == 200 and not answer.json["valid"] and answer.json["problem"]["code"] == "MissingColumns"
    assert h.app.storage.exists(bad) and not h.app.storage.exists(BlobRef("rejected", bad.path))  # nothing moved
    upload = f"dry-{uuid.uuid4().hex[:6]}.csv"
    answer = call_http(http_api.retrain, "POST", "retrain", csv_text(200, seed=1).encode(),
                       params={"name": upload, "endpoints": "*", "dryRun": "true"},
                       headers={"Content-Type": "text/csv"})
    assert answer.status == 200 and answer.json["valid"] and answer.json["endpointCount"] >= 1
    assert not h.app.storage.exists(BlobRef("training-data", upload))  # nothing stored
    paths = {r.data_path for r in h.app.ledger.list_runs()}
    assert not {good.path, bad.path, f"training-data/{upload}"} & paths and not h.jobs_for(good.path)


def test_with_entra_operator_auth_an_uploaders_key_cannot_act_as_an_operator(app, monkeypatch):
    """Issue 21: one function key opened everything. With RETRAIN_OPERATOR_AUTH=entra an operator action needs a
    signed-in principal holding the operator role; the upload (an uploader's key) still works."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    h = app(RETRAIN_OPERATOR_AUTH="entra")
    name = h.new_endpoint("ops")
    model = trained_model(h, name)
    keyed = patch(name, {"model": model})
    assert (keyed.status, keyed.code) == (401, "OperatorRequired") and h.serving(name) != model
    spoofed = patch(name, {"model": model}, **{"x-ms-client-principal-name": "mallory"})
    assert spoofed.status == 401
    uploader = patch(name, {"model": model}, **principal("uma@contoso.com"))
    assert (uploader.status, uploader.code) == (403, "OperatorRequired") and "Retrain.Operator" in uploader.text
    back = call_http(http_api.endpoints_rollback, "POST", f"endpoints/{name}/rollback", route_params={"name": name})
    assert back.status == 401
    operator = patch(name, {"model": model}, **principal("olga@contoso.com", "Retrain.Operator"))
    assert operator.status == 200 and h.serving(name) == model
    assert h.app.ledger.history("default", name)[0].caller == "olga@contoso.com"
    upload = call_http(http_api.retrain, "POST", "retrain", csv_text(300, seed=5).encode(),
                       params={"name": f"{name}/up.csv"}, headers={"Content-Type": "text/csv"})
    assert upload.status == 202, upload.text


def test_ten_parallel_creates_of_one_name_get_one_201_and_nine_409s(app):
    """Issue 21: ten parallel POST /api/endpoints with one name - in 2 of 4 runs two callers got 201 (the ledger
    recorded one creation). Over the emulator's real HTTP, tried four times: one 201, nine EndpointExists."""
    from concurrent.futures import ThreadPoolExecutor

    h = app()
    for attempt in range(4):
        name = f"par{attempt}-{uuid.uuid4().hex[:6]}"
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda n: call_http(http_api.endpoints_create, "POST", "endpoints",
                                                        {"name": n}), [name] * 10))
        codes = sorted((a.status, a.code if a.status != 201 else "") for a in answers)
        assert codes == [(201, "")] + [(409, "EndpointExists")] * 9, codes
        assert [(d.operation, d.outcome) for d in h.app.ledger.history("default", name)] == [("create", "Created")]
