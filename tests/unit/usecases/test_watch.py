"""A watch after every deployment (issue 21): for RETRAIN_WATCH_MINUTES after a model went live, reconcile checks
each endpoint that serves it and rolls back one that stopped serving - whatever the switch took; the watch is
recorded, so it survives a restart, and it ends by itself."""

from __future__ import annotations

import time

from shared.composition import UseCases
from shared.events import EndpointRolledBack, EndpointUpdateFailed
from shared.ports.services import Services
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import land


def deployed(w: World, name: str, seed: int) -> str:
    run = w.trained(name, seed=seed)
    assert land(w, run).status == "Done" and w.run(run.id).status == "Deployed"
    return run.id


def test_a_model_that_stops_serving_during_its_watch_is_rolled_back_by_reconcile():
    w = world()
    for tenant in ("acme", "beta"):
        w.endpoint(tenant)
    first = deployed(w, "acme/1.csv", 1)
    second = deployed(w, "acme/2.csv", 2)
    assert [watch.id for watch in w.ledger.watches()] == [f"run-{first}", f"run-{second}"]
    assert w.app.reconciler.reconcile()["rolledBack"] == 0  # both serve (the first watch ends: replaced)
    w.studio.broken_models.add(w.run(second).model_path or "")  # it fails under real requests, later
    summary = w.app.reconciler.reconcile()
    assert summary["rolledBack"] == 1
    assert w.studio.endpoints["acme"].model_path == w.run(first).model_path
    attempt = w.ledger.get_deployment("default", "acme", f"run-{second}")
    assert attempt is not None and attempt.outcome == "RolledBack" and "watch" in str(attempt.reason)
    assert w.run(second).status == "RolledBack" and "stopped serving" in str(w.run(second).error)
    assert [e.endpoint for e in w.events.of(EndpointUpdateFailed, second)] == ["acme"]
    assert [e.endpoint for e in w.events.of(EndpointRolledBack)] == ["acme"]
    w.app.reconciler.reconcile()
    assert f"run-{second}" not in [watch.id for watch in w.ledger.watches()]  # nothing serves it: the watch ended


def test_a_check_that_cannot_be_made_does_not_roll_back():
    w = world()
    w.endpoint("acme")
    run = deployed(w, "acme/1.csv", 1)
    w.studio.fail("check", times=1)  # a throttled look: says nothing about the model
    assert w.app.reconciler.reconcile()["rolledBack"] == 0 and w.run(run).status == "Deployed"
    assert len(w.ledger.watches()) == 1


def test_a_watch_ends_on_time():
    w = world(RETRAIN_WATCH_MINUTES="0.0005")  # 30 ms
    w.endpoint("acme")
    run = deployed(w, "acme/1.csv", 1)
    time.sleep(0.05)
    w.studio.broken_models.add(w.run(run).model_path or "")  # too late: the watch is over
    assert w.app.reconciler.reconcile()["ended"] == 1 and w.ledger.watches() == []
    assert w.run(run).status == "Deployed"


def test_a_watch_survives_a_restart():
    w = world()
    w.endpoint("acme")
    first = deployed(w, "acme/1.csv", 1)
    second = deployed(w, "acme/2.csv", 2)
    restarted = UseCases(w.settings, w.storage, w.ledger, w.events, Services(w.settings.targets,
                                                                              {"classic": w.kind}))
    w.studio.broken_models.add(w.run(second).model_path or "")
    assert restarted.reconciler.reconcile()["rolledBack"] == 1
    assert w.studio.endpoints["acme"].model_path == w.run(first).model_path


def test_no_watch_when_it_is_off_and_an_operators_patch_is_watched_too():
    w = world(RETRAIN_WATCH_MINUTES="0")
    w.endpoint("acme")
    deployed(w, "acme/1.csv", 1)
    assert w.ledger.watches() == []
    w2 = world()
    w2.endpoint("acme")
    run = w2.trained("acme/1.csv")
    assert w2.app.operations.patch_model(None, "acme", str(run.model_path), caller="ops").outcome == "Deployed"
    assert [watch.model_path for watch in w2.ledger.watches()] == [run.model_path]
