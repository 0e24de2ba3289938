"""A watch after every deployment (issue 21): for RETRAIN_WATCH_MINUTES after a model went live, reconcile checks
each endpoint that serves it and rolls back one that stopped serving - whatever the switch took; the watch is
recorded, so it survives a restart, and it ends by itself."""

from __future__ import annotations

import json
import time

import pytest

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


def watched_fleet(count: int) -> tuple[World, list[str], str, str]:
    """`count` endpoints that served a first run's model, then a second run's (each fan-out run to the end): the
    second one watched. Returns the world, the endpoints, the first run's model and the second run."""
    names = [f"ep-{i:03d}" for i in range(count)]
    w = world(RETRAIN_ENDPOINTS=",".join(names), RETRAIN_VERIFY_SWITCH_SECONDS="30", RETRAIN_VERIFY_POLL_SECONDS="2")
    for name in names:
        w.endpoint(name)
    fanout = w.app.fanout_work
    assert fanout is not None
    runs = []
    for seed in (1, 2):
        run = w.trained(f"wide{seed}.csv", seed=seed)
        land(w, run)
        w.queue.drain(lambda body, count: fanout.handle(body))
        assert w.run(run.id).status == "Deployed"
        runs.append(run)
    w.app.reconciler.reconcile()  # the first run's watch ends (replaced)
    while w.queue.messages:
        for msg in w.queue.receive(100, 60):
            w.queue.delete(msg)
    assert [watch.id for watch in w.ledger.watches()] == [f"run-{runs[1].id}"]
    return w, names, str(runs[0].model_path), runs[1].id


def test_a_widely_served_deployments_watch_is_checked_through_queue_messages_and_a_failing_one_rolled_back():
    w, names, first_model, run_id = watched_fleet(60)
    checks = len([c for c in w.studio.calls if c[0] == "check"])
    summary = w.app.reconciler.reconcile()
    assert summary["watchQueued"] == 60 and summary["watched"] == 0
    assert len([c for c in w.studio.calls if c[0] == "check"]) == checks  # the pass itself checked nothing
    bodies = [m.body for m in w.queue.receive(100, 60)]
    assert sorted(len(b["endpoints"]) for b in bodies if b["kind"] == "watch") == [10, 50]
    broken = w.run(run_id).model_path or ""
    w.studio.broken_models.add(broken)  # it fails under real requests, after it was proven
    fanout = w.app.fanout_work
    assert fanout is not None
    for body in bodies:
        fanout.handle(body)
        fanout.handle(body)  # delivered twice: no endpoint is rolled back twice
    assert {w.studio.endpoints[n].model_path for n in names} == {first_model}  # one step back, not two
    for name in names:
        attempt = w.ledger.get_deployment("default", name, f"run-{run_id}")
        assert attempt is not None and attempt.outcome == "RolledBack" and "watch" in str(attempt.reason)
        assert [d.operation for d in w.ledger.history("default", name)] == ["rollback", "promote", "promote",
                                                                            "create"]
    assert sorted(e.endpoint for e in w.events.of(EndpointUpdateFailed, run_id)) == names
    assert sorted(e.endpoint for e in w.events.of(EndpointRolledBack) if e.deployment_id) == names
    assert w.run(run_id).status == "RolledBack" and "stopped serving" in str(w.run(run_id).error)


def test_a_watch_on_one_wave_of_endpoints_is_still_checked_in_the_pass():
    w, _, _, run_id = watched_fleet(16)
    w.studio.broken_models.add(w.run(run_id).model_path or "")
    summary = w.app.reconciler.reconcile()
    assert summary["watched"] == 16 and summary["rolledBack"] == 16 and summary["watchQueued"] == 0
    assert not [m for m in w.queue.messages.values() if '"watch"' in m.text]


def test_a_throttled_watch_check_holds_every_instance_off_and_its_endpoints_are_looked_at_after_the_pause():
    """Issue 22: a 429 on a watch's check set no shared pause (the classic check folded it into 'could not check
    now'), so every instance kept checking a throttled service. Now the check says it was throttled: the pause every
    instance honours is set from its Retry-After, and the batch's endpoints not looked at go again after it."""
    from shared.usecases.pace import throttle_key
    from tests.fakes.studio import FakeServiceError

    w, names, _, run_id = watched_fleet(60)
    w.app.reconciler.reconcile()
    taken = w.queue.receive(100, 60)
    for message in taken:
        w.queue.delete(message)
    bodies = [m.body for m in taken if m.body["kind"] == "watch"]
    throttled = FakeServiceError("check throttled", transient=True, status=429)
    throttled.retry_after = 20.0
    w.studio.faults["check"] = [throttled]
    w.studio.broken_models.add(w.run(run_id).model_path or "")  # it fails: once looked at, it is rolled back
    fanout = w.app.fanout_work
    assert fanout is not None
    checks = len([c for c in w.studio.calls if c[0] == "check"])
    fanout.handle(bodies[0])
    assert len([c for c in w.studio.calls if c[0] == "check"]) == checks + 1  # stopped at the 429
    assert w.queue.paused_until(throttle_key("default")) == pytest.approx(w.queue.now() + 20, abs=2)
    fanout.handle(bodies[1])  # another instance's batch: held off, not checked
    assert len([c for c in w.studio.calls if c[0] == "check"]) == checks + 1
    again = [(json.loads(m.text), m.visible_at - w.queue.now()) for m in w.queue.messages.values()]
    assert sorted(len(b["endpoints"]) for b, _ in again if b["kind"] == "watch") == sorted(
        len(b["endpoints"]) for b in bodies)  # every endpoint still to be looked at
    assert all(d == pytest.approx(20, abs=2) for b, d in again if b["kind"] == "watch")
    w.queue.offset += 21  # the pause is over
    for message in w.queue.receive(100, 60):
        fanout.handle(message.body)
    assert all(w.ledger.get_deployment("default", n, f"run-{run_id}").outcome == "RolledBack"  # type: ignore
               for n in names)
