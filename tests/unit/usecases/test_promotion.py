"""Promotion on the fakes: the gate (minimum, lower-is-better, improvement over the serving model), the fan-out to
many endpoints in several ledger batches, `*` endpoints, the protected endpoint, models that do not serve, checks
that cannot be made (pending, then reconciled), refused PUTs, and the fan-out's events."""

from __future__ import annotations

import pytest

from shared.events import EndpointRolledBack, EndpointUpdated, EndpointUpdateFailed, JobFinished, ModelRejected
from shared.ports.ledger import BATCH_ENDPOINTS
from shared.ports.serving import Verdict
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import land

CREATED = "experiment/model.ilearner"


def serving(w: World, endpoint: str) -> str | None:
    return w.studio.endpoints[endpoint].model_path


def names_of(count: int) -> list[str]:
    return [f"ep-{i:03d}" for i in range(count)]


def many_endpoints(w: World, count: int) -> list[str]:
    names = names_of(count)
    for name in names:
        w.endpoint(name)
    return names


# ---- the gate ---------------------------------------------------------------------------------------------------
def test_a_model_that_passes_the_gate_is_deployed_verified_and_recorded():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    result = land(w, run)
    assert result.status == "Done" and [(e.endpoint, e.outcome) for e in result.endpoints] == [("acme", "Deployed")]
    stored = w.run(run.id)
    assert stored.status == "Deployed" and stored.metrics == {"AUC": 0.85, "Accuracy": 0.81}
    assert stored.outcomes == {"Deployed": 1} and stored.error is None
    assert serving(w, "acme") == run.model_path
    cur = w.ledger.current("default", "acme")
    assert cur is not None and (cur.run_id, cur.model_path, cur.metric) == (run.id, run.model_path, 0.85)
    assert cur.deployment_id == f"run-{run.id}" and cur.lease_owner is None
    assert [d.outcome for d in w.ledger.history("default", "acme")] == ["Deployed", "Created"]
    updated = w.events.of(EndpointUpdated, run.id)
    assert len(updated) == 1 and updated[0].endpoint == "acme" and updated[0].operation == "promote"
    assert w.events.of(JobFinished, run.id)[0].metrics == {"AUC": 0.85, "Accuracy": 0.81}
    assert [c for c in w.studio.calls if c[1] == "acme"][-3:] == [("observe", "acme"), ("put_in_service", "acme"),
                                                                  ("verify", "acme")]


@pytest.mark.parametrize(("settings", "metrics", "passes"), [
    ({"RETRAIN_GATE_MINIMUM": "0.9"}, {"AUC": 0.85}, False),
    ({"RETRAIN_GATE_MINIMUM": "0.8"}, {"AUC": 0.85}, True),
    ({}, {"Accuracy": 0.95}, False),  # no AUC at all: the gate fails closed
    ({"RETRAIN_GATE_METRIC": "Root Mean Squared Error", "RETRAIN_GATE_MINIMUM": "0.5"},
     {"Root Mean Squared Error": 0.3}, True),  # lower is better: the minimum is a ceiling
    ({"RETRAIN_GATE_METRIC": "Root Mean Squared Error", "RETRAIN_GATE_MINIMUM": "0.5"},
     {"Root Mean Squared Error": 0.7}, False),
], ids=["below-minimum", "above-minimum", "metric-missing", "lower-is-better-passes", "lower-is-better-fails"])
def test_the_gate_decides_and_a_model_below_it_is_recorded_as_rejected_on_each_endpoint(settings, metrics, passes):
    w = world(**settings)
    w.endpoint("acme")
    w.studio.metrics = metrics
    run = w.trained("acme/d.csv")
    result = land(w, run)
    stored = w.run(run.id)
    if passes:
        assert stored.status == "Deployed" and serving(w, "acme") == run.model_path
        return
    assert result.status == "Rejected" and stored.status == "BelowGate" and str(stored.error).startswith("BelowGate")
    assert serving(w, "acme") == CREATED and ("put_in_service", "acme") not in w.studio.calls
    [attempt] = [d for d in w.ledger.history("default", "acme") if d.run_id == run.id]
    assert attempt.outcome == "Rejected" and attempt.id == f"run-{run.id}"
    assert stored.outcomes == {"Rejected": 1} and stored.endpoint_results[0]["outcome"] == "Rejected"
    [event] = w.events.of(ModelRejected, run.id)
    assert event.code == "BelowGate" and event.endpoints == ["acme"]
    again = land(w, w.run(run.id))  # redelivered: the same answer, nothing more recorded
    assert again.status == "Rejected" and len(w.events.of(ModelRejected, run.id)) == 1
    assert len([d for d in w.ledger.history("default", "acme") if d.run_id == run.id]) == 1


def test_a_model_must_improve_on_the_serving_one_when_the_rule_is_set_unless_forced():
    w = world(RETRAIN_GATE_MIN_IMPROVEMENT="0.05")
    w.endpoint("acme")
    first = w.trained("acme/1.csv", seed=1)  # AUC 0.85; the created model has no metric: nothing to compare
    assert land(w, first).status == "Done" and serving(w, "acme") == first.model_path
    w.studio.metrics = {"AUC": 0.87}
    second = w.trained("acme/2.csv", seed=2)
    result = land(w, second)
    assert [e.outcome for e in result.endpoints] == ["Rejected"] and "does not improve" in str(
        result.endpoints[0].reason)
    assert w.run(second.id).status == "BelowGate" and serving(w, "acme") == first.model_path
    [rejected] = w.events.of(ModelRejected, second.id)
    assert rejected.code == "NoImprovement" and rejected.endpoint == "acme"
    w.studio.metrics = {"AUC": 0.95}
    third = w.trained("acme/3.csv", seed=3)
    assert land(w, third).status == "Done" and serving(w, "acme") == third.model_path
    w.studio.metrics = {"AUC": 0.9}
    forced = w.trained("acme/4.csv", seed=4)
    w.studio.finish(str(w.run(forced.id).job_id))
    result = w.app.promotion.promote(w.run(forced.id), force=True)
    assert [e.outcome for e in result.endpoints] == ["Deployed"] and serving(w, "acme") == forced.model_path


def test_a_gate_over_several_metrics_needs_every_rule_and_records_every_gated_metric():
    gate = '{"AUC": {"min": 0.7}, "Accuracy": {"min": 0.8}, "Log Loss": {"max": 0.5, "improvement": 0.05}}'
    w = world(RETRAIN_GATE=gate)
    w.endpoint("acme")
    w.studio.metrics = {"AUC": 0.9, "Accuracy": 0.79, "Log Loss": 0.3, "Recall": 0.5}
    weak = w.trained("acme/1.csv", seed=1)
    assert land(w, weak).status == "Rejected"
    error = str(w.run(weak.id).error)
    assert "Accuracy 0.7900 misses the minimum 0.8" in error and "AUC" not in error
    assert w.events.of(ModelRejected, weak.id)[0].metrics == {"AUC": 0.9, "Accuracy": 0.79, "Log Loss": 0.3}
    w.studio.metrics = {"AUC": 0.9, "Accuracy": 0.85, "Log Loss": 0.3, "Recall": 0.5}
    good = w.trained("acme/2.csv", seed=2)
    assert land(w, good).status == "Done" and serving(w, "acme") == good.model_path
    gated = {"AUC": 0.9, "Accuracy": 0.85, "Log Loss": 0.3}
    attempt = w.ledger.get_deployment("default", "acme", f"run-{good.id}")
    cur = w.ledger.current("default", "acme")
    assert attempt is not None and attempt.metrics == gated and cur is not None and cur.metrics == gated
    assert w.events.of(EndpointUpdated, good.id)[0].metrics == gated
    w.studio.metrics = {"AUC": 0.95, "Accuracy": 0.9, "Log Loss": 0.27}  # lower is better: 0.03 is not enough
    slight = w.trained("acme/3.csv", seed=3)
    result = land(w, slight)
    assert [e.outcome for e in result.endpoints] == ["Rejected"] and "Log Loss" in str(result.endpoints[0].reason)
    assert serving(w, "acme") == good.model_path


# ---- fan-out ------------------------------------------------------------------------------------------------------
def test_a_fan_out_to_120_endpoints_in_several_batches_deploys_each_once_and_publishes_every_event():
    w = world(RETRAIN_PATCH_CONCURRENCY="8", RETRAIN_ENDPOINTS=",".join(names_of(120)), RETRAIN_FANOUT_MODE="inline")
    names = many_endpoints(w, 120)
    assert len(names) > 2 * BATCH_ENDPOINTS
    run = w.trained("everyone.csv")
    result = land(w, run)
    assert result.status == "Done" and {e.outcome for e in result.endpoints} == {"Deployed"}
    assert [e.endpoint for e in result.endpoints] == names
    stored = w.run(run.id)
    assert stored.status == "Deployed" and stored.outcomes == {"Deployed": 120}
    assert len(stored.endpoint_results) == 100  # the first 100 on the run; every attempt in the ledger
    for name in names:
        cur = w.ledger.current("default", name)
        assert cur is not None and cur.run_id == run.id and cur.lease_owner is None
        assert serving(w, name) == run.model_path
        assert [d.outcome for d in w.ledger.history("default", name)] == ["Deployed", "Created"]
    assert sorted(e.endpoint for e in w.events.of(EndpointUpdated, run.id)) == names
    assert not w.events.waiting
    puts = [c for c in w.studio.calls if c[0] == "put_in_service"]
    assert len(puts) == 120 and serving(w, "default") == CREATED
    again = land(w, w.run(run.id))  # a redelivery: the recorded outcomes, no second attempt
    assert {e.outcome for e in again.endpoints} == {"Deployed"} and len(again.endpoints) == 120
    assert len([c for c in w.studio.calls if c[0] == "put_in_service"]) == 120
    assert len(w.events.of(EndpointUpdated, run.id)) == 120


def test_star_means_every_endpoint_but_the_protected_one():
    w = world(RETRAIN_ENDPOINTS="*", RETRAIN_FANOUT_MODE="inline")
    names = many_endpoints(w, 60)
    run = w.trained("all.csv")
    assert w.run(run.id).endpoints == ["*"]
    result = land(w, run)
    assert {e.endpoint for e in result.endpoints} == set(names)
    assert w.run(run.id).status == "Deployed" and w.run(run.id).outcomes == {"Deployed": 60}
    assert w.studio.endpoints["default"].history == [] and serving(w, "default") == CREATED
    assert w.ledger.history("default", "default") == []


def test_the_protected_endpoint_is_never_patched_even_when_named():
    w = world(RETRAIN_ENDPOINTS="default,acme")
    w.endpoint("acme")
    run = w.trained("both.csv")
    result = land(w, run)
    outcomes = {e.endpoint: e.outcome for e in result.endpoints}
    assert outcomes == {"default": "Refused", "acme": "Deployed"}
    assert w.run(run.id).status == "Deployed"  # the protected endpoint does not count against the run
    assert ("put_in_service", "default") not in w.studio.calls and serving(w, "default") == CREATED
    assert w.ledger.history("default", "default") == []


def test_data_for_the_protected_endpoints_folder_never_reaches_it():
    w = world()
    run = w.app.intake.accept(w.drop("default/d.csv"))
    assert run is not None
    if run.job_id:  # (whether such data may train at all is the intake's call; it never deploys)
        w.studio.finish(run.job_id)
        result = land(w, w.run(run.id))
        assert [e.outcome for e in result.endpoints] == ["Refused"]
    assert w.run(run.id).status in ("Failed", "Rejected")
    assert ("put_in_service", "default") not in w.studio.calls and serving(w, "default") == CREATED
    assert w.ledger.history("default", "default") == []


def test_one_endpoints_deployment_on_its_own_is_recorded_once_and_never_on_the_protected_endpoint():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    w.app.promotion.jobs.finished(run, w.studio.state(str(run.job_id)))
    target, model = w.settings.targets[0], w.app.jobs.model(run)
    refused = w.app.deployer.deploy(target, "default", model, run, "promote", False, "test")
    assert refused.outcome == "Refused" and w.ledger.history("default", "default") == []
    done = w.app.deployer.deploy(target, "acme", model, run, "promote", False, "test")
    assert (done.outcome, done.deployment_id) == ("Deployed", f"run-{run.id}") and serving(w, "acme") == run.model_path
    again = w.app.deployer.deploy(target, "acme", model, run, "promote", False, "test")  # a redelivery
    assert again.outcome == "Deployed" and [c[0] for c in w.studio.calls].count("put_in_service") == 1


def test_a_lease_left_by_a_dead_deployment_is_taken_over_and_a_half_done_fan_out_finishes_only_what_is_left():
    w = world(RETRAIN_PATCH_CONCURRENCY="1", RETRAIN_ENDPOINTS="*", RETRAIN_FANOUT_MODE="inline")
    names = many_endpoints(w, BATCH_ENDPOINTS + 10)
    w.ledger.acquire("default", names[3], "a-dead-invocation", seconds=-1)  # its lease ran out
    run = w.trained("wide.csv")
    w.studio.verdicts.append(Verdict("throttled", transient=True))  # the first endpoint's check cannot be made
    first = land(w, run)
    assert first.status == "Pending" and w.run(run.id).status == "Deploying"
    outcomes = {e.endpoint: e.outcome for e in first.endpoints}
    assert outcomes == {**dict.fromkeys(names, "Deployed"), names[0]: "Pending"}
    assert w.run(run.id).outcomes == {"Deployed": len(names) - 1, "Pending": 1}
    cur = w.ledger.current("default", names[3])
    assert cur is not None and cur.run_id == run.id and cur.lease_owner is None
    # The first batch now holds a finished attempt: it begins one endpoint at a time, and only the pending one works.
    assert w.app.reconciler.reconcile()["promoted"] == 1
    assert w.run(run.id).status == "Deployed" and w.run(run.id).outcomes == {"Deployed": len(names)}
    puts = [c[1] for c in w.studio.calls if c[0] == "put_in_service"]
    assert len(puts) == len(names) + 1 and puts.count(names[0]) == 2
    assert all(len([d for d in w.ledger.history("default", n) if d.run_id == run.id]) == 1 for n in names)


# ---- models that do not serve, checks that cannot be made ------------------------------------------------------
def test_a_model_that_cannot_load_is_rolled_back_and_the_old_model_serves():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    w.studio.broken_models.add(str(run.model_path))
    result = land(w, run)
    [outcome] = result.endpoints
    assert outcome.outcome == "RolledBack" and "cannot be loaded" in str(outcome.reason)
    assert serving(w, "acme") == CREATED and w.studio.endpoints["acme"].history[-2:] == [run.model_path, CREATED]
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.run_id is None and cur.model_path == CREATED  # the pointer did not move
    assert w.run(run.id).status == "RolledBack"
    [failed] = w.events.of(EndpointUpdateFailed, run.id)
    [back] = w.events.of(EndpointRolledBack, run.id)
    assert failed.will_retry is False and back.restored and back.restored_model == CREATED
    assert back.failed_model == run.model_path and not w.events.of(EndpointUpdated, run.id)


@pytest.mark.parametrize("how", ["verification-throttled", "put-throttled"])
def test_a_check_that_cannot_be_made_leaves_the_old_model_pending_and_reconcile_finishes_it(how):
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    if how == "verification-throttled":
        w.studio.verdicts.append(Verdict("the smoke request was throttled (429)", transient=True))
    else:
        w.studio.fail("put_in_service", transient=True)
    result = land(w, run)
    assert result.status == "Pending" and [e.outcome for e in result.endpoints] == ["Pending"]
    assert "will be retried" in str(result.endpoints[0].reason)
    assert serving(w, "acme") == CREATED and w.run(run.id).status == "Deploying"
    [failed] = w.events.of(EndpointUpdateFailed, run.id)
    assert failed.will_retry is True
    summary = w.app.reconciler.reconcile()
    assert summary["promoted"] == 1, summary
    assert serving(w, "acme") == run.model_path and w.run(run.id).status == "Deployed"
    attempts = [d for d in w.ledger.history("default", "acme") if d.run_id == run.id]
    assert [d.outcome for d in attempts] == ["Deployed"]  # the same attempt, finished
    assert w.app.reconciler.reconcile()["checked"] == 0


def test_a_put_the_service_refuses_fails_that_endpoint_and_is_not_retried():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    w.studio.fail("put_in_service", transient=False, input_refused=True)
    result = land(w, run)
    assert [e.outcome for e in result.endpoints] == ["Failed"]
    assert str(result.endpoints[0].reason).startswith("the service refused the model")
    assert w.run(run.id).status == "Failed" and serving(w, "acme") == CREATED
    [failed] = w.events.of(EndpointUpdateFailed, run.id)
    assert failed.will_retry is False
    assert w.app.reconciler.reconcile()["checked"] == 0
    assert [c[0] for c in w.studio.calls].count("put_in_service") == 1


def test_an_older_model_landing_after_a_newer_one_is_superseded_and_recorded():
    w = world()
    w.endpoint("acme")
    older, newer = w.trained("acme/old.csv", seed=1), w.trained("acme/new.csv", seed=2)
    assert older.order < newer.order
    land(w, newer)
    late = land(w, older)
    assert [e.outcome for e in late.endpoints] == ["Superseded"]
    assert serving(w, "acme") == newer.model_path and w.run(older.id).status == "Superseded"
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.run_id == newer.id
    outcomes = {d.run_id: d.outcome for d in w.ledger.history("default", "acme") if d.run_id}
    assert outcomes == {newer.id: "Deployed", older.id: "Superseded"}


def test_a_fan_outs_events_wait_through_an_outage_and_are_all_published_by_reconcile():
    w = world(RETRAIN_ENDPOINTS="*", RETRAIN_FANOUT_MODE="inline")
    names = many_endpoints(w, 70)
    run = w.trained("dark.csv")
    w.events.down = True
    result = land(w, run)
    assert {e.outcome for e in result.endpoints} == {"Deployed"}
    assert not w.events.of(EndpointUpdated, run.id)
    waiting = [e for e in w.events.waiting if isinstance(e, EndpointUpdated)]
    assert sorted(e.endpoint for e in waiting) == names
    w.events.down = False
    summary = w.app.reconciler.reconcile()
    assert summary["eventsSent"] >= 71  # every endpoint's event and the job's
    assert sorted(e.endpoint for e in w.events.of(EndpointUpdated, run.id)) == names
    assert not w.events.waiting
