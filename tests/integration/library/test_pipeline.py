"""The library end to end against Azurite and the emulator (no fakes): data -> job -> model -> endpoints."""

from __future__ import annotations

import json
import threading
import time

from shared.records import BlobRef


def model_ref(h, run) -> BlobRef:
    return BlobRef.parse(run.model_path)


def test_data_to_job_to_every_target_endpoint(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    endpoints = [h.new_endpoint("a"), h.new_endpoint("b")]
    h.settings.targets[0].endpoints = endpoints
    before = {ep: h.score(ep) for ep in endpoints}
    ref = h.upload_data(f"flow-{endpoints[0]}.csv", drift=1.0)
    run = h.app.intake.accept(ref)
    assert run is not None and run.status == "Training" and run.job_id
    result = h.app.model_landing.landed(model_ref(h, run))
    assert result is not None and result.status == "Done"
    assert [e.outcome for e in result.endpoints] == ["Deployed", "Deployed"]
    for ep in endpoints:
        assert h.serving(ep) == run.model_path
        assert h.score(ep) != before[ep]
        cur = h.app.ledger.current("default", ep)
        assert cur.run_id == run.id and cur.metric is not None and cur.metric > 0.7
    stored = h.app.ledger.get_run(run.id)
    assert stored.status == "Deployed" and stored.metrics["AUC"] > 0.7
    types = [e["type"] for e in h.events() if e["data"].get("runId") == run.id]
    for expected in ("TrainingDataAccepted", "JobSubmitted", "JobFinished", "EndpointUpdated"):
        assert f"Retrain.{expected}" in types


def test_tenant_folder_routes_to_that_endpoint_only(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    tenant, other = h.new_endpoint("ten"), h.new_endpoint("oth")
    other_model = h.serving(other)
    run = h.app.intake.accept(h.upload_data(f"{tenant}/data.csv", drift=0.8))
    result = h.app.model_landing.landed(model_ref(h, run))
    assert [(e.endpoint, e.outcome) for e in result.endpoints] == [(tenant, "Deployed")]
    assert h.serving(tenant) == run.model_path and h.serving(other) == other_model


def test_same_event_three_times_one_job_one_deployment(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("dup")
    ref = h.upload_data(f"{tenant}/dup.csv", drift=0.5)
    runs = []
    threads = [threading.Thread(target=lambda: runs.append(h.app.intake.accept(ref))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.id for r in runs}) == 1
    assert len(h.jobs_for(ref.path)) == 1
    run = h.app.ledger.get_run(runs[0].id)
    assert run.job_id
    results = []
    threads = [threading.Thread(target=lambda: results.append(h.app.model_landing.landed(model_ref(h, run))))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = [d for d in h.app.ledger.history("default", tenant) if d.operation == "promote"]
    assert len(history) == 1 and history[0].outcome == "Deployed"
    updated = [e for e in h.events("EndpointUpdated") if e["data"].get("runId") == run.id]
    assert len(updated) == 1


def test_two_models_racing_newer_data_wins_both_recorded(harness):
    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_CANCEL_SUPERSEDED_JOBS="false")  # both jobs run: the race is at deploy
    tenant = h.new_endpoint("race")
    old = h.app.intake.accept(h.upload_data(f"{tenant}/old.csv", seed=3, drift=0.2))
    time.sleep(1.1)  # Last-Modified has one-second resolution
    new = h.app.intake.accept(h.upload_data(f"{tenant}/new.csv", seed=4, drift=1.0))
    assert old.data_time < new.data_time
    h.wait_job(old.job_id)
    h.wait_job(new.job_id)
    threads = [threading.Thread(target=h.app.model_landing.landed, args=(model_ref(h, r),)) for r in (new, old)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert h.serving(tenant) == new.model_path
    assert h.app.ledger.current("default", tenant).run_id == new.id
    outcomes = {d.run_id: d.outcome for d in h.app.ledger.history("default", tenant) if d.run_id}
    assert outcomes[new.id] == "Deployed" and outcomes[old.id] in ("Deployed", "Superseded")
    # The older one, late again (say a reconcile), is recorded and not deployed.
    h.app.promotion.promote(h.app.ledger.get_run(old.id))
    assert h.serving(tenant) == new.model_path


def test_model_below_the_gate_is_not_deployed(harness):
    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_GATE_MINIMUM="0.995")
    tenant = h.new_endpoint("gate")
    serving = h.serving(tenant)
    run = h.app.intake.accept(h.upload_data(f"{tenant}/gate.csv"))
    result = h.app.model_landing.landed(model_ref(h, run))
    assert result.status == "Rejected" and "misses the minimum" in result.reason
    assert h.serving(tenant) == serving
    assert [d.outcome for d in h.app.ledger.history("default", tenant) if d.run_id == run.id] == ["Rejected"]
    assert [e for e in h.events("ModelRejected") if e["data"].get("runId") == run.id]


def test_an_expired_token_on_a_job_result_is_replaced_before_the_patch(start_emulator, harness):
    """A job's outputs get write-only grants (never the account key), so its results echo a token that cannot read
    the model, and expired here: a GET of the job is tried (the documented refresh, for a service that mints read
    tokens), then the app mints a read-only token for the PATCH."""
    emu = start_emulator("--result-sas-seconds", "2")
    h = harness(emu.manifest, RETRAIN_ENDPOINTS="", RETRAIN_SAS_REFRESH_MARGIN_MINUTES="0")
    tenant = h.new_endpoint("sas")
    run = h.app.intake.accept(h.upload_data(f"{tenant}/sas.csv", drift=0.7))
    h.wait_job(run.job_id)
    status = h.app.studio.bes(h.settings.targets[0]).get(run.job_id)
    time.sleep(2.5)  # the token in that GET has now expired
    from shared.adapters.sas import needs_refresh
    from shared.ports.serving import ModelRef

    ref = status.Results["output1"]
    assert needs_refresh(ref.SasBlobToken, __import__("datetime").timedelta(0))
    serving = h.app.services.serving(h.settings.targets[0])
    result = h.app.deployer.deploy(h.settings.targets[0], tenant, ModelRef(ref.RelativeLocation, job_id=run.job_id),
                                   run=h.app.ledger.get_run(run.id), operation="promote", force=False, trigger="test")
    assert result.outcome == "Deployed", result.reason
    assert serving.refreshed_by_get == 0 and serving.minted == 1
    assert h.serving(tenant) == run.model_path


def test_retry_storms_with_retry_after_succeed_without_duplicate_jobs(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("storm")
    h.fault(route="bes.submit", status=503, retry_after=0.2, count=3)
    h.fault(route="bes.start", status=429, retry_after=0.1, count=2)
    h.fault(route="bes.get", status=503, retry_after=0.1, count=2)
    h.fault(route="management.patch_endpoint", status=503, retry_after=0.2, count=3)
    h.fault(route="management.get_endpoint", status=429, retry_after=0.1, count=2)
    h.fault(route="rrs.execute", status=503, retry_after=0.1, count=2)
    ref = h.upload_data(f"{tenant}/storm.csv", drift=0.6)
    run = h.app.intake.accept(ref)
    assert run.status == "Training"
    result = h.app.model_landing.landed(model_ref(h, run))
    assert [e.outcome for e in result.endpoints] == ["Deployed"]
    assert len(h.jobs_for(ref.path)) == 1
    assert h.serving(tenant) == run.model_path


def test_a_model_the_endpoint_cannot_load_is_rolled_back(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("roll")
    good_model = h.serving(tenant)
    good_score = h.score(tenant)
    doc = ('{"format": "studio-classic-emulator/ilearner", "formatVersion": 1, "learner": "x", "numeric": [], '
           '"categorical": [], "weights": [1.0], "bias": 0.0, "label": {"positive": "a", "negative": "b"}}')
    ref = BlobRef("models", f"{tenant}/broken.ilearner")
    h.put(ref, doc.encode())
    result = h.app.model_landing.landed(ref)
    assert [e.outcome for e in result.endpoints] == ["RolledBack"]
    assert "ResourceLoadFailed" in result.endpoints[0].reason
    assert h.serving(tenant) == good_model and h.score(tenant) == good_score
    assert [e for e in h.events("EndpointRolledBack") if e["data"].get("endpoint") == tenant]
    # a hand-dropped file no endpoint can serve is kept in rejected/ with the reason
    assert result.status == "Rejected"
    assert not h.app.storage.exists(ref)
    moved = BlobRef("rejected", f"models/{tenant}/broken.ilearner")
    assert h.app.storage.read_bytes(moved) == doc.encode()
    reason = json.loads(h.app.storage.read_bytes(BlobRef("rejected", moved.name + ".reason.json")))
    assert reason["code"] == "ModelNotServable"
    assert [e for e in h.events("ModelRejected") if e["data"].get("model") == ref.path]


def test_an_empty_model_file_or_one_for_a_missing_endpoint_is_rejected_without_a_patch(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    empty = BlobRef("models", "empty.ilearner")
    h.put(empty, b"")
    assert h.app.model_landing.landed(empty).status == "Rejected"
    nowhere = BlobRef("models", "no-such-endpoint/m.ilearner")
    h.put(nowhere, b"{}")
    result = h.app.model_landing.landed(nowhere)
    assert result.status == "Rejected" and "does not exist" in result.reason
    codes = {e["data"].get("model"): e["data"].get("code") for e in h.events("ModelRejected")}
    assert codes[empty.path] == "EmptyModel" and codes[nowhere.path] == "NoSuchEndpoint"
    assert not h.app.storage.exists(empty) and not h.app.storage.exists(nowhere)


def test_malformed_csv_is_moved_to_rejected_with_a_reason_and_no_job(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("bad")
    text = "age,workclass\n39,State-gov\n"
    ref = h.upload_data(f"{tenant}/bad.csv", text=text)
    run = h.app.intake.accept(ref)
    assert run.status == "Rejected" and run.job_id is None and "MissingColumns" in run.error
    assert not h.app.storage.exists(ref)
    moved = BlobRef("rejected", f"training-data/{tenant}/bad.csv")
    assert h.app.storage.read_bytes(moved).decode() == text
    reason = json.loads(h.app.storage.read_bytes(BlobRef("rejected", moved.name + ".reason.json")))
    assert reason["code"] == "MissingColumns" and reason["line"] == 1 and reason["source"] == ref.path
    assert not h.jobs_for(ref.path)
    assert [e for e in h.events("TrainingDataRejected") if e["data"].get("runId") == run.id]
    # Redelivered: nothing more happens, nothing is lost.
    assert h.app.intake.accept(ref) is None


def test_ragged_row_names_its_line(harness):
    from tools.emulator.census import csv_text

    h = harness(RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("rag")
    lines = csv_text(300, seed=2).splitlines()
    lines[150] += ",x"
    run = h.app.intake.accept(h.upload_data(f"{tenant}/rag.csv", text="\n".join(lines) + "\n"))
    assert run.status == "Rejected" and "line 151" in run.error


def test_unknown_tenant_is_rejected(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    run = h.app.intake.accept(h.upload_data("nosuchtenant123/x.csv"))
    assert run.status == "Rejected" and "NoSuchEndpoint" in run.error


def test_manual_patch_rollback_and_history(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("man")
    created_model = h.serving(tenant)
    run = h.app.intake.accept(h.upload_data(f"{tenant}/m.csv", drift=0.9))
    h.wait_job(run.job_id)
    result = h.app.operations.patch_model("default", tenant, run.model_path)
    assert result.outcome == "Deployed" and h.serving(tenant) == run.model_path
    back = h.app.operations.rollback("default", tenant)
    assert back.outcome == "Deployed" and h.serving(tenant) == created_model
    view = h.app.views.endpoint("default", tenant)
    ops = [d["operation"] for d in view["history"]]
    assert ops[0] == "rollback" and "patch" in ops and ops[-1] == "create"
    assert "PrimaryKey" not in str(view)


def test_reconcile_promotes_a_run_no_trigger_saw(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    tenant = h.new_endpoint("rec")
    run = h.app.intake.accept(h.upload_data(f"{tenant}/r.csv", drift=0.4))
    h.wait_job(run.job_id)
    summary = h.app.reconciler.reconcile()
    assert summary["promoted"] >= 1
    assert h.serving(tenant) == run.model_path


def test_reconcile_cancels_a_stuck_job(start_emulator, harness):
    emu = start_emulator("--job-seconds", "60")
    h = harness(emu.manifest, RETRAIN_ENDPOINTS="", RETRAIN_JOB_DEADLINE_MINUTES="0.001")
    tenant = h.new_endpoint("stk")
    run = h.app.intake.accept(h.upload_data(f"{tenant}/s.csv"))
    time.sleep(0.3)  # past the (tiny) deadline
    summary = h.app.reconciler.reconcile()
    assert summary["cancelled"] == 1
    stored = h.app.ledger.get_run(run.id)
    assert stored.status == "Failed" and "deadline" in stored.error
    assert h.app.studio.bes(h.settings.targets[0]).get(run.job_id).StatusCode == "Cancelled"


def test_required_improvement_over_the_serving_model(harness):
    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_GATE_MIN_IMPROVEMENT="0.5")
    tenant = h.new_endpoint("imp")
    first = h.app.intake.accept(h.upload_data(f"{tenant}/1.csv", seed=5, drift=0.3))
    assert [e.outcome for e in h.app.model_landing.landed(model_ref(h, first)).endpoints] == ["Deployed"]
    time.sleep(1.1)
    second = h.app.intake.accept(h.upload_data(f"{tenant}/2.csv", seed=6, drift=0.3))
    result = h.app.model_landing.landed(model_ref(h, second))
    assert [e.outcome for e in result.endpoints] == ["Rejected"] and "improve" in result.endpoints[0].reason
    assert h.serving(tenant) == first.model_path


def test_adding_an_existing_endpoint_is_a_conflict(harness):
    import pytest

    from shared.errors import Refused

    h = harness(RETRAIN_ENDPOINTS="")
    name = h.new_endpoint("dupe")
    with pytest.raises(Refused) as info:
        h.app.operations.add_endpoint(name)
    assert info.value.conflict and info.value.code == "EndpointExists"


def test_a_fan_out_wider_than_one_ledger_batch_with_a_busy_endpoint_and_a_redelivery(harness):
    from concurrent.futures import ThreadPoolExecutor

    from shared.adapters.deployment_book import BATCH_ENDPOINTS

    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_FANOUT_MODE="inline")  # the in-invocation fan-out's ledger batches
    with ThreadPoolExecutor(8) as pool:
        endpoints = list(pool.map(lambda _: h.new_endpoint("wide"), range(BATCH_ENDPOINTS + 12)))
    h.settings.targets[0].endpoints = endpoints
    busy = endpoints[3]
    target = h.settings.targets[0].name
    h.app.ledger.acquire(target, busy, "someone-else", seconds=1.5)  # released by expiry mid-way
    ref = h.upload_data(f"wide-{endpoints[0]}.csv", drift=0.8)
    run = h.app.intake.accept(ref)
    h.wait_job(run.job_id)
    result = h.app.model_landing.landed(model_ref(h, run))
    assert {e.endpoint: e.outcome for e in result.endpoints} == dict.fromkeys(endpoints, "Deployed")
    for ep in (endpoints[0], busy, endpoints[-1]):
        cur = h.app.ledger.current(target, ep)
        assert cur.run_id == run.id and cur.lease_owner is None
        assert h.serving(ep) == run.model_path
    again = h.app.model_landing.landed(model_ref(h, run))  # a redelivery: recorded outcomes, no second attempt
    assert {e.outcome for e in again.endpoints} == {"Deployed"}
    assert [d.outcome for d in h.app.ledger.history(target, endpoints[-1])] == ["Deployed", "Created"]
