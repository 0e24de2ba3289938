"""The fan-out spread over queue messages (RETRAIN_FANOUT_MODE=queue), on the fakes: batches, proofs scheduled
after the switch (no thread waits), endpoints not switched yet looked at again, a failed proof rolled back,
messages delivered twice or dying half-way, a lost batch dispatched again, and a 429 that holds everyone off.
The fake queue moves its own clock to each message's time: nothing sleeps."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.decisions import MODEL_REFUSED
from shared.events import EndpointRolledBack, EndpointUpdated, EndpointUpdateFailed
from shared.ports.ledger import BATCH_ENDPOINTS
from shared.ports.serving import Verdict
from shared.usecases.pace import throttle_key
from tests.fakes.studio import FakeServiceError, FakeServing
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import land

CREATED = "experiment/model.ilearner"


def fleet(count: int, **settings: str) -> tuple[World, list[str]]:
    names = [f"ep-{i:03d}" for i in range(count)]
    w = world(**{"RETRAIN_FANOUT_MODE": "queue", "RETRAIN_ENDPOINTS": ",".join(names),
                 "RETRAIN_VERIFY_SWITCH_SECONDS": "30", "RETRAIN_VERIFY_POLL_SECONDS": "2", **settings})
    for name in names:
        w.endpoint(name)
    return w, names


def handler(w: World) -> Any:
    assert w.app.fanout_work is not None
    return lambda body, count: w.app.fanout_work.handle(body)


def kinds(w: World) -> list[str]:
    return sorted(m.text.split('"kind":')[1].split('"')[1] for m in w.queue.messages.values())


def assert_deployed_once(w: World, run_id: str, names: list[str], model: str | None) -> None:
    stored = w.run(run_id)
    assert stored.status == "Deployed" and stored.outcomes == {"Deployed": len(names)}
    for name in names:
        cur = w.ledger.current("default", name)
        assert cur is not None and cur.deployment_id == f"run-{run_id}" and cur.lease_owner is None
        assert w.studio.endpoints[name].model_path == model
        assert [d.outcome for d in w.ledger.history("default", name)] == ["Deployed", "Created"]
    assert sorted(e.endpoint for e in w.events.of(EndpointUpdated, run_id)) == names
    assert not w.events.waiting


def test_a_fan_out_is_batches_on_the_queue_and_each_proof_is_a_message_due_after_the_switch():
    w, names = fleet(120)
    run = w.trained("everyone.csv")
    started = time.monotonic()
    result = land(w, run)
    assert result.status == "Pending" and {e.outcome for e in result.endpoints} == {"Pending"}
    assert w.run(run.id).status == "Deploying"
    batches = -(-120 // BATCH_ENDPOINTS)
    assert kinds(w) == ["deploy"] * batches + ["tally"]
    assert not [c for c in w.studio.calls if c[0] == "put_in_service"]  # nothing done in the promoting call
    ran = w.queue.drain(handler(w))
    assert time.monotonic() - started < 10  # 30 s of switch were waited by the queue, not by a thread
    assert ran >= 2 * batches + 1 and w.queue.offset >= 30
    assert_deployed_once(w, run.id, names, run.model_path)
    assert len([c for c in w.studio.calls if c[0] == "put_in_service"]) == 120
    assert w.studio.endpoints["default"].model_path == CREATED


@pytest.mark.parametrize(("mode", "count", "queued"), [
    ("auto", 17, True),  # more than one wave of RETRAIN_PATCH_CONCURRENCY (16): on the queue
    ("auto", 16, False),  # one wave finishes in its invocation, as before
    ("auto", 1, False),  # the common single-endpoint retrain
    ("inline", 17, False),
    ("queue", 1, True),
])
def test_the_fan_out_mode_auto_queues_only_what_one_wave_of_threads_cannot_finish(mode: str, count: int,
                                                                                   queued: bool):
    w, names = fleet(count, RETRAIN_FANOUT_MODE=mode)
    assert world().settings.fanout_mode == "auto"  # the default
    run = w.trained("wave.csv")
    result = land(w, run)
    puts = [c for c in w.studio.calls if c[0] == "put_in_service"]
    if queued:
        assert result.status == "Pending" and kinds(w)[-1] == "tally" and not puts
        w.queue.drain(handler(w))
    else:
        assert result.status == "Done" and not w.queue.messages and len(puts) == count
        assert not [c for c in w.studio.calls if c[0] == "verify_once"]  # the inline path: verify
    assert_deployed_once(w, run.id, names, run.model_path)


def test_auto_deploys_inline_on_a_target_that_cannot_prove_later(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(FakeServing, "proves_later", False)
    w, names = fleet(40, RETRAIN_FANOUT_MODE="auto")
    run = w.trained("nolater.csv")
    assert land(w, run).status == "Done" and not w.queue.messages
    assert_deployed_once(w, run.id, names, run.model_path)


def test_an_endpoint_not_switched_yet_is_looked_at_again_later_and_a_broken_model_is_rolled_back():
    w, names = fleet(6)
    w.studio.switching = {"ep-001": 2, "ep-002": 1}
    run = w.trained("some.csv")
    land(w, run)
    w.queue.drain(handler(w))
    looks = [c[1] for c in w.studio.calls if c[0] == "verify_once"]
    assert looks.count("ep-001") == 3 and looks.count("ep-002") == 2 and looks.count("ep-000") == 1
    assert_deployed_once(w, run.id, names, run.model_path)

    w2, names2 = fleet(3)
    run2 = w2.trained("broken.csv")
    w2.studio.broken_models.add(str(run2.model_path))
    land(w2, run2)
    w2.queue.drain(handler(w2))
    assert w2.run(run2.id).status == "RolledBack"
    assert {w2.studio.endpoints[n].model_path for n in names2} == {CREATED}
    assert sorted(e.endpoint for e in w2.events.of(EndpointRolledBack, run2.id)) == names2


def test_every_message_delivered_twice_verifies_each_endpoint_once():
    w, names = fleet(70)
    run = w.trained("twice.csv")
    land(w, run)
    fanout = w.app.fanout_work
    assert fanout is not None

    def twice(body: dict[str, Any], count: int) -> None:
        fanout.handle(body)
        fanout.handle(body)

    w.queue.drain(twice)
    assert_deployed_once(w, run.id, names, run.model_path)
    proofs = [c for c in w.studio.calls if c[0] == "verify_once"]
    assert len(proofs) == 70  # the second delivery of a proof found its endpoints finished


def test_an_instance_dying_half_way_through_a_batch_leaves_it_to_the_redelivery():
    w, names = fleet(60)
    run = w.trained("crash.csv")
    land(w, run)
    w.studio.fail("put_in_service", times=1)  # answered as a transient error: Pending, lease released
    w.studio.faults["verify_once"] = [FakeServiceError("instance died", transient=True)]
    died = {"n": 0}
    fanout = w.app.fanout_work
    assert fanout is not None

    def dies_once(body: dict[str, Any], count: int) -> None:
        if body["kind"] == "prove" and not died["n"]:
            died["n"] += 1
            raise RuntimeError("the instance died")  # the message comes back after its visibility timeout
        fanout.handle(body)

    # One endpoint's PATCH failed transiently (its attempt stays open): when the fan-out's claim runs out, the
    # tally dispatches what is not finished again, under a new claim.
    w.queue.drain(dies_once)
    assert died["n"] == 1
    assert_deployed_once(w, run.id, names, run.model_path)
    assert not w.queue.poison


def throttled(retry_after: float = 20) -> FakeServiceError:
    """The service's 429 with its Retry-After."""
    error = FakeServiceError("throttled", transient=True, status=429)
    error.retry_after = retry_after
    return error


def test_a_429_holds_every_instance_off_for_its_retry_after():
    w, names = fleet(4)
    run = w.trained("slow.csv")
    land(w, run)
    error = throttled()
    w.studio.faults["put_in_service"] = [error]
    w.queue.drain(handler(w))
    assert w.queue.marks[throttle_key("default")] > 0
    assert_deployed_once(w, run.id, names, run.model_path)


def test_a_429_on_a_proofs_look_holds_every_instance_off_for_its_retry_after():
    w, names = fleet(4)
    run = w.trained("slowlook.csv")
    land(w, run)
    error = throttled()
    w.studio.faults["verify_once"] = [error]
    looked: list[float] = []
    fanout = w.app.fanout_work
    assert fanout is not None

    def handle(body: dict[str, Any], count: int) -> None:
        if body["kind"] == "prove":
            looked.append(w.queue.now())
        fanout.handle(body)

    w.queue.drain(handle)
    assert w.queue.marks[throttle_key("default")] > 0  # every instance reads the pause
    assert len(looked) >= 2 and looked[1] - looked[0] >= 20  # the endpoint throttled is looked at after it
    assert_deployed_once(w, run.id, names, run.model_path)
    assert len([c for c in w.studio.calls if c[0] == "verify_once"]) == 5  # nobody looked during the pause


def test_a_look_that_failed_without_a_429_is_tried_again_without_pausing_anyone():
    w, names = fleet(3)
    run = w.trained("flaky.csv")
    land(w, run)
    w.studio.fail("verify_once", times=2)  # 503s, no Retry-After: not throttling
    w.queue.drain(handler(w))
    assert throttle_key("default") not in w.queue.marks
    assert_deployed_once(w, run.id, names, run.model_path)


@pytest.mark.parametrize("mode", ["queue", "inline"])
def test_a_model_the_service_did_not_take_after_put_returned_ends_failed_as_a_refused_put(mode: str):
    """A target that only finds out after put_in_service returned that it will not serve the model (Azure ML: the
    deployment ended Failed) says so with a Verdict's `not_taken`: what it left is tidied (restore), and the outcome
    is that of a put the service refused - Failed, the model's fault, no rollback announced."""
    w, names = fleet(3, RETRAIN_FANOUT_MODE=mode)
    run = w.trained("untaken.csv")
    w.studio.verdicts.append(Verdict("the deployment did not serve: ResourceNotReady", not_taken=FakeServiceError(
        "ResourceNotReady: the model could not be loaded", input_refused=True)))
    land(w, run)
    w.queue.drain(handler(w))
    stored = w.run(run.id)
    assert stored.status == "PartiallyDeployed" and stored.outcomes == {"Deployed": 2, "Failed": 1}, stored
    failed = [n for n in names if w.outcomes(n, run.id) == ["Failed"]]
    assert len(failed) == 1
    attempt = w.ledger.get_deployment("default", failed[0], f"run-{run.id}")
    assert attempt is not None and str(attempt.reason).startswith(MODEL_REFUSED), attempt
    assert ("restore", failed[0]) in w.studio.calls  # what it left is tidied
    assert not w.events.of(EndpointRolledBack, run.id)
    assert [e.endpoint for e in w.events.of(EndpointUpdateFailed, run.id)] == failed


def test_a_ceiling_on_calls_a_second_paces_one_instance_by_its_share():
    w, _ = fleet(2, RETRAIN_TARGET_CALLS_PER_SECOND="200", RETRAIN_MAX_INSTANCES="2")
    assert w.app.fanout_work is not None
    pace = w.app.fanout_work.pace
    assert pace.rate == 100
    started = time.monotonic()
    for _ in range(11):
        pace.take("default", 2)
    assert time.monotonic() - started >= 0.19


def test_a_fan_out_dispatched_again_while_its_proofs_wait_still_proves_each_endpoint_once():
    w, names = fleet(60)
    run = w.trained("again.csv")
    land(w, run)
    fanout = w.app.fanout_work
    assert fanout is not None
    for msg in w.queue.receive(16, 60):  # the batches run; their proofs wait for the switch
        if msg.body["kind"] == "deploy":
            fanout.handle(msg.body)
            w.queue.delete(msg)
    w.queue.offset += 1000  # the fan-out's claim ran out before the proofs were due
    w.app.reconciler.reconcile()  # dispatches again: the leased endpoints are left to the first owner's proofs
    w.queue.drain(handler(w))
    assert_deployed_once(w, run.id, names, run.model_path)
    assert len([c for c in w.studio.calls if c[0] == "verify_once"]) == 60


def test_a_proof_that_fails_over_a_model_that_was_failing_too_does_not_put_that_one_back():
    w, names = fleet(2)
    broken_before = "experiment/broken.ilearner"
    for name in names:
        w.studio.endpoints[name].model_path = broken_before
    w.studio.broken_models.add(broken_before)
    run = w.trained("also-broken.csv")
    w.studio.broken_models.add(str(run.model_path))
    land(w, run)
    fanout = w.app.fanout_work
    assert fanout is not None
    for _ in range(3):  # deploy, then prove: the message says the old model was failing
        for msg in w.queue.receive(16, 60):
            if msg.body["kind"] != "tally":
                fanout.handle(msg.body)
                w.queue.delete(msg)
        w.queue.offset += 31
    assert {w.studio.endpoints[n].model_path for n in names} == {run.model_path}  # not put back
    assert {d.outcome for n in names for d in w.ledger.history("default", n) if d.run_id == run.id} == {"Pending"}


# ---- a proof that may outlast an invocation (Azure ML: 20 minutes per operation) is never waited for inline -----
def long_proof(monkeypatch: pytest.MonkeyPatch, seconds: float = 3600.0) -> None:
    """The fake target proves like Azure ML with its defaults: a create and two traffic steps, 20 minutes each."""
    monkeypatch.setattr(FakeServing, "proof_seconds", lambda self, switch, poll: seconds)


@pytest.mark.parametrize(("mode", "proof", "queued"), [
    ("auto", 3600.0, True),  # Azure ML's bound: queued for one endpoint too
    ("auto", 301.0, True),  # past half of host.json's functionTimeout (600 s)
    ("auto", 300.0, False),  # within it (Studio (classic): 2 switch times): one wave stays inline, as before
    ("inline", 3600.0, False),  # the explicit choice
])
def test_auto_queues_a_single_endpoint_whose_proof_may_outlast_half_an_invocation(
        monkeypatch: pytest.MonkeyPatch, mode: str, proof: float, queued: bool):
    long_proof(monkeypatch, proof)
    w, names = fleet(1, RETRAIN_FANOUT_MODE=mode)
    run = w.trained("one.csv")
    result = land(w, run)
    puts = [c for c in w.studio.calls if c[0] == "put_in_service"]
    if queued:
        assert result.status == "Pending" and kinds(w) == ["deploy", "tally"] and not puts
        w.queue.drain(handler(w))
    else:
        assert result.status == "Done" and not w.queue.messages and len(puts) == 1
    assert_deployed_once(w, run.id, names, run.model_path)


def test_an_operators_patch_and_rollback_with_a_long_proof_answer_at_once_and_the_queue_finishes_them(
        monkeypatch: pytest.MonkeyPatch):
    from blueprints.http_api import _deployment_answer
    from shared.decisions import HANDED_OFF

    long_proof(monkeypatch)
    w, _ = fleet(1, RETRAIN_FANOUT_MODE="auto")
    model = w.trained("ep-000/1.csv", seed=1).model_path
    patched = w.app.operations.patch_model(None, "ep-000", str(model), caller="alice")
    assert (patched.outcome, patched.reason) == ("Pending", HANDED_OFF), patched
    assert not [c for c in w.studio.calls if c[0] in ("put_in_service", "verify")]  # nothing waited in the call
    action = w.run(str(patched.deployment_id).removeprefix("run-"))
    assert action.status == "Deploying" and action.kind == "manual"
    answer = _deployment_answer(patched)
    assert answer.status_code == 202 and answer.headers["Location"] == f"/api/runs/{action.id}"
    w.queue.drain(handler(w))
    assert w.run(action.id).status == "Deployed" and w.studio.endpoints["ep-000"].model_path == model
    [top, *_] = w.ledger.history("default", "ep-000")
    assert (top.id, top.operation, top.outcome, top.caller) == (patched.deployment_id, "patch", "Deployed", "alice")

    back = w.app.operations.rollback(None, "ep-000", caller="carol")
    assert (back.outcome, back.reason) == ("Pending", HANDED_OFF), back
    w.queue.drain(handler(w))
    assert w.studio.endpoints["ep-000"].model_path == CREATED
    [top, *_] = w.ledger.history("default", "ep-000")
    assert (top.operation, top.outcome, top.restores) == ("rollback", "Deployed", "create")
    w.events.flush()
    rolled = [e for e in w.events.of(EndpointRolledBack) if e.failed_model is None]  # announced as a rollback
    assert [(e.restored_model, e.to_deployment) for e in rolled] == [(CREATED, "create")]


def test_a_queued_operators_rollback_is_not_applied_over_a_model_that_landed_since(monkeypatch: pytest.MonkeyPatch):
    """Second review: an operator's action handed to the queue was decided under the lease, then the lease was let go;
    a newer model landing before the queue acted was undone by the rollback (and the 'rolls back once' guards read a
    pointer that had not moved yet). The action applies only while the endpoint serves what it was decided on."""
    long_proof(monkeypatch)
    w, _ = fleet(1, RETRAIN_FANOUT_MODE="auto")
    first = w.trained("ep-000/1.csv", seed=1)
    land(w, first)
    w.queue.drain(handler(w))
    assert w.studio.endpoints["ep-000"].model_path == first.model_path
    newer = w.trained("ep-000/2.csv", seed=2)
    land(w, newer)  # its deploy message waits on the queue
    back = w.app.operations.rollback(None, "ep-000", caller="carol")  # decided from `first`
    again = w.app.operations.rollback(None, "ep-000", caller="carol")  # a second one, decided from `first` too
    assert back.outcome == again.outcome == "Pending"
    w.queue.drain(handler(w))
    assert w.studio.endpoints["ep-000"].model_path == newer.model_path  # the newer model stays
    for result in (back, again):
        action = w.run(str(result.deployment_id).removeprefix("run-"))
        assert action.status == "Superseded", action
        attempt = w.ledger.get_deployment("default", "ep-000", str(result.deployment_id))
        assert attempt is not None and attempt.outcome == "Superseded" and "changed since" in str(attempt.reason)


def test_a_queued_action_whose_endpoint_is_busy_is_looked_at_again_shortly(monkeypatch: pytest.MonkeyPatch):
    """Second review: a deploy message that met another deployment's lease dropped the endpoint until the run's claim
    ran out (over an hour with Azure ML's bound). It goes back on the queue after RETRAIN_VERIFY_POLL_SECONDS."""
    long_proof(monkeypatch)
    w, _ = fleet(1, RETRAIN_FANOUT_MODE="auto")
    model = w.trained("ep-000/1.csv", seed=1).model_path
    patched = w.app.operations.patch_model(None, "ep-000", str(model), caller="alice")
    assert patched.outcome == "Pending", patched
    held = w.ledger.acquire("default", "ep-000", "someone-else", seconds=600)  # another deployment, meanwhile
    for message in w.queue.receive(16, 10):  # the deploy message (and the tally) run once
        w.app.fanout_work.handle(message.body)  # type: ignore[union-attr]
        w.queue.delete(message)
    again = [(m.text, m.visible_at - w.queue.now()) for m in w.queue.messages.values() if '"deploy"' in m.text]
    assert len(again) == 1 and again[0][1] == pytest.approx(2, abs=0.5), again  # looked at again in 2 s
    w.ledger.release(held, "someone-else")
    started = w.queue.now()
    w.queue.drain(handler(w))
    action = w.run(str(patched.deployment_id).removeprefix("run-"))
    assert action.status == "Deployed" and w.studio.endpoints["ep-000"].model_path == model
    assert w.queue.now() - started < 300  # not the claim's end (an hour)


def test_an_action_the_queue_does_not_take_fails_at_once_and_is_never_carried_out_later(
        monkeypatch: pytest.MonkeyPatch):
    """Second review: the hand-off wrote the run's claim, then the queue refused the message: the caller got a 503
    and the action ran an hour later (the claim's end), over whatever served then. Now it ends Failed at once."""
    from tests.fakes.studio import FakeServiceError

    long_proof(monkeypatch)
    w, _ = fleet(1, RETRAIN_FANOUT_MODE="auto")
    model = w.trained("ep-000/1.csv", seed=1).model_path
    real_send = w.queue.send

    def refuse_deploys(body: dict, delay_seconds: float = 0) -> None:
        if body.get("kind") == "deploy":
            raise FakeServiceError("the queue did not answer", transient=True)
        real_send(body, delay_seconds)

    monkeypatch.setattr(w.queue, "send", refuse_deploys)
    with pytest.raises(FakeServiceError):
        w.app.operations.patch_model(None, "ep-000", str(model), caller="alice")
    monkeypatch.setattr(w.queue, "send", real_send)
    action = next(r for r in w.ledger.runs.values() if r.id.startswith("patch-"))
    assert action.status == "Failed" and "could not be queued" in str(action.error)
    w.queue.offset += 7200  # past any claim
    w.app.reconciler.reconcile()
    w.queue.drain(handler(w))
    assert w.run(action.id).status == "Failed"  # never carried out behind the caller's error
    attempt = w.ledger.get_deployment("default", "ep-000", f"run-{action.id}")
    assert attempt is not None and attempt.outcome == "Failed"
