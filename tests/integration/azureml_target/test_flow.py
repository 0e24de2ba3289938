"""The retraining story on Azure ML (issue 19), through the unchanged use cases and the azureml adapters against
the Azure ML stand-in: data -> a command job -> the gate -> a new deployment with no traffic, smoke-scored, given
traffic in steps -> the old one kept for a rollback that is a traffic switch. And what goes wrong: a model that
cannot load, a deployment stuck Creating, a busy endpoint, a quota refusal, a traffic update failing half-way -
each ends with the endpoint serving the right model with all traffic on a verified deployment, and no orphan."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest
import requests

from shared.adapters.work_queue import StorageWorkQueue
from shared.composition import UseCases
from shared.ports.serving import ModelRef
from shared.records import BlobRef


def endpoint(h: Any) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    h.app.operations.add_endpoint(name, "azureml flow test")
    return name


def trained(h: Any, tenant: str, seed: int = 1) -> Any:
    """A run whose job has ended (Training until its event or reconcile moves it on)."""
    run = h.app.intake.accept(h.upload_data(f"{tenant}/data-{seed}.csv", rows=1500, seed=seed, drift=0.6))
    assert run is not None and run.status == "Training" and run.job_id, run
    training = h.app.services.training(h.settings.targets[0])
    deadline = time.monotonic() + 60
    while not training.state(run.job_id).ended:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return run


def deployments(h: Any, name: str) -> dict[str, int]:
    """The endpoint's deployments with their traffic, as the service shows them."""
    info = h.app.services.serving(h.settings.targets[0]).endpoint(name)
    return {d["name"]: d["traffic"] for d in info.details["deployments"]}


# The tests that drive a swap in the promoting call ask for the inline path: under the default (auto) an Azure ML
# swap, whose proof may take an hour, goes on the work queue whatever the number of endpoints.
INLINE = {"RETRAIN_FANOUT_MODE": "inline"}


def serving(h: Any, name: str) -> str | None:
    info = h.app.services.serving(h.settings.targets[0]).endpoint(name)
    return None if info is None else str(info.model_path) if info.model_path else None


def aml_admin(h: Any, method: str, path: str, **body: Any) -> Any:
    url = h.manifest["azureml"]["admin_url"] + path
    answer = requests.request(method, url, json=body or None, timeout=10, verify=os.environ["REQUESTS_CA_BUNDLE"])
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def test_data_to_a_job_to_a_verified_deployment_with_all_traffic_and_the_events(aml_harness):
    h = aml_harness(**INLINE)
    name = endpoint(h)
    assert serving(h, name) is None  # a new endpoint serves nothing yet
    run = trained(h, name)
    result = h.app.promotion.on_job_event(run.job_id, "Completed")  # the workspace's RunCompleted event
    assert result is not None and result.status == "Done", result
    assert [e.outcome for e in result.endpoints] == ["Deployed"]
    stored = h.app.ledger.get_run(run.id)
    assert stored.status == "Deployed" and stored.metrics["AUC"] > 0.7 and stored.model_path == f"models/{run.id}/model"
    assert serving(h, name) == stored.model_path and list(deployments(h, name).values()) == [100]
    types = {e["type"] for e in h.events() if e["data"].get("runId") == run.id}
    assert {"Retrain.TrainingDataAccepted", "Retrain.JobSubmitted", "Retrain.JobFinished",
            "Retrain.EndpointUpdated"} <= types
    assert h.app.promotion.on_job_event(run.job_id, "Completed").status == "Done"  # redelivered: nothing new
    assert len(deployments(h, name)) == 1


def test_a_second_model_gets_its_own_deployment_and_a_rollback_is_a_traffic_switch(aml_harness):
    h = aml_harness(**INLINE)
    name = endpoint(h)
    first, second = trained(h, name, 1), trained(h, name, 2)
    h.app.promotion.on_job_event(first.job_id, "Completed")
    h.app.promotion.on_job_event(second.job_id, "Completed")
    live = deployments(h, name)
    assert sorted(live.values()) == [0, 100] and serving(h, name) == f"models/{second.id}/model"
    started = time.monotonic()
    result = h.app.operations.rollback(None, name)
    assert result.outcome == "Deployed", result
    assert serving(h, name) == f"models/{first.id}/model" and deployments(h, name).keys() == live.keys()
    assert time.monotonic() - started < 20  # a traffic switch, no new deployment
    page = h.app.status.html()  # the status page shows the deployments, their traffic and models
    for deployment, share in deployments(h, name).items():
        assert f"{deployment}: {share} %" in page
    assert f"models/{first.id}/model" in page and f"models/{second.id}/model" in page


def test_a_model_that_cannot_load_is_rolled_back_its_deployment_deleted_and_the_reason_kept(aml_harness):
    h = aml_harness(**INLINE)
    name = endpoint(h)
    good = trained(h, name, 1)
    h.app.promotion.on_job_event(good.job_id, "Completed")
    bad = trained(h, name, 2)
    h.put(BlobRef("models", f"{bad.id}/model/model.json"), b'{"format": "not a model"}')  # it cannot load
    result = h.app.promotion.on_job_event(bad.job_id, "Completed")
    assert [e.outcome for e in result.endpoints] == ["Failed"], result
    reason = h.app.ledger.get_run(bad.id).error
    assert "ResourceNotReady" in reason and "logs" in reason
    assert serving(h, name) == f"models/{good.id}/model" and list(deployments(h, name).values()) == [100]


def test_a_deployment_stuck_creating_past_its_deadline_is_not_left_live(aml_harness):
    h = aml_harness(azureml={"deployment_timeout_minutes": 0.05})  # 3 s
    name = endpoint(h)
    good = trained(h, name, 1)
    h.app.promotion.on_job_event(good.job_id, "Completed")
    stuck = trained(h, name, 3)
    aml_admin(h, "POST", "/deployment-faults", endpoint=name, stuck_seconds=8, count=1)
    try:
        result = h.app.promotion.on_job_event(stuck.job_id, "Completed")
    finally:
        aml_admin(h, "DELETE", "/deployment-faults")
    assert [e.outcome for e in result.endpoints] == ["Pending"], result  # unproven: tried again later
    assert serving(h, name) == f"models/{good.id}/model"
    assert deployments(h, name)[max(deployments(h, name), key=lambda d: deployments(h, name)[d])] == 100
    time.sleep(6)  # the stuck operation ends; reconcile (or a redelivery) finishes the deployment
    h.app.reconciler.reconcile()
    assert h.app.ledger.get_run(stuck.id).status == "Deployed"
    assert serving(h, name) == f"models/{stuck.id}/model" and sorted(deployments(h, name).values()) == [0, 100]


def test_a_quota_refusal_is_final_with_its_reason_and_leaves_no_deployment(aml_harness):
    h = aml_harness(azureml={"instance_count": 50}, **INLINE)  # over the stand-in's instance quota
    name = endpoint(h)
    run = trained(h, name)
    result = h.app.promotion.on_job_event(run.job_id, "Completed")
    assert [e.outcome for e in result.endpoints] == ["Failed"], result
    assert "OutOfQuota" in (h.app.ledger.get_run(run.id).error or "")
    assert deployments(h, name) == {}


def test_a_traffic_update_failing_half_way_puts_the_traffic_back(aml_harness):
    h = aml_harness(**INLINE)
    name = endpoint(h)
    good = trained(h, name, 1)
    h.app.promotion.on_job_event(good.job_id, "Completed")
    other = trained(h, name, 2)
    # the first traffic step (10 %) goes through; the next PUT of the endpoint fails for good
    h.fault(route="azureml.put_endpoint", status=400, skip=1, count=1)
    result = h.app.promotion.on_job_event(other.job_id, "Completed")
    h.clear_faults()
    assert [e.outcome for e in result.endpoints] == ["RolledBack"], result
    assert serving(h, name) == f"models/{good.id}/model" and list(deployments(h, name).values()) == [100]


@pytest.mark.parametrize("mode", ["inline", "auto"])
def test_a_retried_swap_whose_model_fails_takes_its_half_moved_traffic_back_and_deletes_its_deployment(
        aml_harness, mode):
    """Attempt 1 dies once its first traffic step (10 %) is in place (the invocation killed, the prove message
    poisoned); its retry observes {old: 90, new: 10} - never the baseline: when the new model then fails, the old
    deployment gets all the traffic back and the new one is deleted. Inline, and on the work queue (auto)."""
    h = aml_harness(RETRAIN_FANOUT_MODE=mode)
    app, queue = h.app, None
    if mode == "auto":  # a fresh work queue, drained by the test as the host's queue trigger would
        queue = StorageWorkQueue(h.settings, f"work{uuid.uuid4().hex[:12]}")
        queue.ensure()
        app = UseCases(h.settings, h.app.storage, h.app.ledger, h.app.events, h.app.services, queue)
    name = endpoint(h)
    good = trained(h, name, 1)
    app.promotion.on_job_event(good.job_id, "Completed")
    if queue is not None:
        drain(app, queue, good.id)
    (old,) = deployments(h, name)
    other = trained(h, name, 2)
    service = app.services.serving(h.settings.targets[0])
    model = ModelRef(f"models/{other.id}/model")
    first = service.observe(name, None)  # attempt 1, by hand: put in service, looked at until 10 % is in place
    service.put_in_service(name, model)
    started = time.monotonic()
    while True:  # (no look while the endpoint is Updating: one that saw the 10 % land would start the next step)
        assert time.monotonic() - started < 60
        info = service.endpoint(name).details
        if info["provisioningState"] not in ("Creating", "Updating"):
            if any(share for d, share in info["traffic"].items() if d != old):
                break
            assert service.verify_once(name, model, None, first, time.monotonic() - started) is None
        time.sleep(0.2)
    new = next(d for d in deployments(h, name) if d != old)
    assert deployments(h, name) == {old: 90, new: 10}  # ... and attempt 1 dies here
    # the retry (the promotion again): the endpoint's score of the 10 % step fails for good (the one before it,
    # the observation's, goes through)
    h.fault(route="azureml.score", status=400, skip=1, count=1)
    try:
        app.promotion.on_job_event(other.job_id, "Completed")
        if queue is not None:
            drain(app, queue, other.id)
    finally:
        h.clear_faults()
    assert app.ledger.get_run(other.id).status == "RolledBack", app.ledger.get_run(other.id)
    assert deployments(h, name) == {old: 100}  # the failing model keeps no traffic, nor its deployment
    assert serving(h, name) == f"models/{good.id}/model"
    rolled = [e for e in h.events("EndpointRolledBack") if e["data"].get("runId") == other.id]
    assert [e["data"]["restored"] for e in rolled] == [True]


def test_no_key_or_connection_string_reaches_azure_ml(aml_harness):
    h = aml_harness()
    target = h.settings.targets[0]
    assert target.kind == "azureml" and target.management_key is None and target.bes_key is None
    assert "AccountKey" not in str(target.azureml) and "key" not in str(target.azureml.job).lower()


def test_a_busy_endpoint_is_waited_out_within_the_budget(aml_harness):
    """Azure ML allows one operation at a time per endpoint (409 Conflict while one runs): the deployment waits it
    out and goes on, no error and nothing left behind."""
    h = aml_harness(**INLINE)
    name = endpoint(h)
    good = trained(h, name, 1)
    h.app.promotion.on_job_event(good.job_id, "Completed")
    other = trained(h, name, 2)
    arm = h.app.services.serving(h.settings.targets[0]).arm
    aml_admin(h, "POST", "/deployment-faults", endpoint=name, deployment="busy", stuck_seconds=4, count=1)
    try:  # someone else's deployment keeps the endpoint busy for 4 s
        body = {"location": h.manifest["azureml"]["location"], "sku": {"name": "Default", "capacity": 1},
                "properties": {"endpointComputeType": "Managed", "instanceType": "Standard_DS3_v2",
                               "model": h.app.services.serving(h.settings.targets[0]).endpoint(name)
                               .details["deployments"][0]["model"]}}
        arm.send("PUT", f"/onlineEndpoints/{name}/deployments/busy", "someone else's deployment", body)
        result = h.app.promotion.on_job_event(other.job_id, "Completed")
    finally:
        aml_admin(h, "DELETE", "/deployment-faults")
    assert [e.outcome for e in result.endpoints] == ["Deployed"], result
    assert serving(h, name) == f"models/{other.id}/model" and deployments(h, name)[next(
        d for d, share in deployments(h, name).items() if share)] == 100


# ---- the queued fan-out (issue 22): nothing waits through a deployment's long-running operations ---------------
def queued_fleet(aml_harness: Any, count: int = 3) -> tuple[Any, Any, Any, list[str]]:
    """`count` endpoints in a target of their own, more than RETRAIN_PATCH_CONCURRENCY (2): under the default
    RETRAIN_FANOUT_MODE (auto) their fan-out goes on a work queue (a fresh one on Azurite, drained by the test as
    the host's queue trigger would)."""
    names = [f"q{uuid.uuid4().hex[:9]}" for _ in range(count)]
    h = aml_harness(RETRAIN_ENDPOINTS=",".join(names), RETRAIN_PATCH_CONCURRENCY="2",
                    RETRAIN_VERIFY_SWITCH_SECONDS="1", RETRAIN_VERIFY_POLL_SECONDS="0.5")
    assert h.settings.fanout_mode == "auto"
    queue = StorageWorkQueue(h.settings, f"work{uuid.uuid4().hex[:12]}")
    queue.ensure()
    app = UseCases(h.settings, h.app.storage, h.app.ledger, h.app.events, h.app.services, queue)
    for name in names:
        app.operations.add_endpoint(name, "queued azureml fan-out")
    return h, app, queue, names


def fleet_run(h: Any, app: Any, seed: int) -> Any:
    """A run for every endpoint of the fleet (a file outside a tenant folder), its job ended."""
    run = app.intake.accept(h.upload_data(f"fleet-{uuid.uuid4().hex[:6]}.csv", rows=1500, seed=seed, drift=0.6))
    assert run is not None and run.job_id, run
    training = app.services.training(h.settings.targets[0])
    deadline = time.monotonic() + 60
    while not training.state(run.job_id).ended:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return run


def drain(app: Any, queue: Any, run_id: str, timeout: float = 120) -> dict[str, float]:
    """Take the queue's messages (as the host would) until the run is no longer Deploying; the longest time one
    message of each kind took."""
    longest: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while app.ledger.get_run(run_id).status == "Deploying":
        assert time.monotonic() < deadline, f"run {run_id} did not end"
        got = queue.receive(16, 60)
        for msg in got:
            started = time.monotonic()
            app.fanout_work.handle(msg.body)
            kind = str(msg.body["kind"])
            longest[kind] = max(longest.get(kind, 0.0), time.monotonic() - started)
            queue.delete(msg)
        if not got:
            time.sleep(0.2)
    return longest


def test_a_queued_fan_out_deploys_without_waiting_for_a_deployments_create(aml_harness):
    h, app, queue, names = queued_fleet(aml_harness)
    run = fleet_run(h, app, 1)
    # the first endpoint's deployment takes 10 s to create: its batch's message does not wait for it
    aml_admin(h, "POST", "/deployment-faults", endpoint=names[0], stuck_seconds=10, count=1)
    try:
        result = app.promotion.on_job_event(run.job_id, "Completed")
        assert result.status == "Pending" and {e.outcome for e in result.endpoints} == {"Pending"}, result
        longest = drain(app, queue, run.id)
    finally:
        aml_admin(h, "DELETE", "/deployment-faults")
    stored = app.ledger.get_run(run.id)
    assert stored.status == "Deployed" and stored.outcomes == {"Deployed": 3}, stored
    assert longest["deploy"] < 6 and longest["prove"] < 6, longest  # each message one step, no operation followed
    for name in names:
        assert serving(h, name) == stored.model_path and list(deployments(h, name).values()) == [100]
    updated = [e for e in h.events("EndpointUpdated") if e["data"].get("runId") == run.id]
    assert sorted(e["data"]["endpoint"] for e in updated) == sorted(names)


def test_a_queued_deployment_that_cannot_load_fails_with_its_logs_and_the_old_traffic_stays(aml_harness):
    h, app, queue, names = queued_fleet(aml_harness)
    good = fleet_run(h, app, 1)
    app.promotion.on_job_event(good.job_id, "Completed")
    drain(app, queue, good.id)
    assert app.ledger.get_run(good.id).status == "Deployed"
    before = {name: deployments(h, name) for name in names}
    bad = fleet_run(h, app, 2)
    h.put(BlobRef("models", f"{bad.id}/model/model.json"), b'{"format": "not a model"}')  # it cannot load
    app.promotion.on_job_event(bad.job_id, "Completed")
    serving_target = app.services.serving(h.settings.targets[0])
    for msg in queue.receive(16, 60):  # the deploy batch: the creates start
        if msg.body["kind"] == "deploy":
            app.fanout_work.handle(msg.body)
            queue.delete(msg)
    serving_target.swap.started.clear()  # the proofs run on another instance: only the service says why it failed
    drain(app, queue, bad.id)
    stored = app.ledger.get_run(bad.id)
    assert stored.status == "Failed" and stored.outcomes == {"Failed": 3}, stored
    assert "could not be loaded" in str(stored.error), stored.error  # the deployment's logs, read by the proof
    for name in names:
        assert serving(h, name) == f"models/{good.id}/model" and deployments(h, name) == before[name]
