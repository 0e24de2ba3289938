"""The events of one endpoint agree with its ledger, whatever the race (issue 21: "in a burst without coalescing,
the events contradict the ledger"). A burst is many files for one endpoint, each its own run
(RETRAIN_COALESCE_SECONDS=0), whose promotions race for the endpoint; the interleavings are made at exact ledger
writes (FakeLedger.on_write), never by thread timing.

What is checked is what a consumer of the events alone can know: an `EndpointUpdated` is published only for a
pointer change the ledger recorded (its attempt Deployed, never Superseded/Pending/RolledBack in the end), at most
once per change, and the one with the highest `sequence` for an endpoint names the model the ledger says it
serves - in whatever order the events arrive."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.events import EndpointUpdated
from shared.records import Deployment, PromoteResult, Record, Run
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import at_write, land

SUBJECT = "default/acme"


def updates(w: World, endpoint: str = "acme") -> list[Any]:
    return [e for e in w.events.of(EndpointUpdated) if e.endpoint == endpoint]


def live_by_events(w: World, endpoint: str = "acme") -> str | None:
    """What a consumer concludes serves: the EndpointUpdated with the highest sequence (arrival order unknown)."""
    events = updates(w, endpoint)
    assert events, "no EndpointUpdated at all"
    return str(max(events, key=lambda e: e.sequence).model)


def assert_events_agree_with_ledger(w: World, endpoint: str = "acme") -> None:
    cur = w.ledger.current("default", endpoint)
    assert cur is not None
    events = updates(w, endpoint)
    # each pointer change announced once: no two EndpointUpdated for one sequence, none for one deployment twice
    assert len({e.sequence for e in events}) == len(events), [(e.model, e.sequence) for e in events]
    assert len({e.deployment_id for e in events}) == len(events), [(e.model, e.deployment_id) for e in events]
    for e in events:  # each announced change is one the ledger recorded
        dep = w.ledger.get_deployment("default", endpoint, e.deployment_id)
        assert dep is not None and dep.outcome == "Deployed", (e.model, dep.outcome if dep else None)
    assert live_by_events(w, endpoint) == cur.model_path == w.studio.endpoints[endpoint].model_path
    newest = max(events, key=lambda e: e.sequence)
    assert newest.deployment_id == cur.deployment_id


def burst(w: World, count: int) -> list[Run]:
    """`count` files for one endpoint, one second apart, each trained (its own run: no coalescing)."""
    return [w.trained(f"acme/part-{i}.csv", seed=i) for i in range(count)]


def stalls_at_finish(w: World, run: Run, then: Any) -> None:
    """`run`'s deployment stalls past its lease after its verification, before its outcome is recorded (a slow
    outbox write, a paused instance): `then` runs at that point, with the endpoint's lease expired."""

    def expire_and_compete(record: Record) -> None:
        w.ledger.pointers[("default", "acme")].lease_until = time.time() - 1
        then()

    at_write(w, "attempt.finish", expire_and_compete,
             when=lambda record: isinstance(record, Deployment) and record.run_id == run.id)


# ---- a newer run takes the endpoint over from a stalled older one ---------------------------------------------------
def test_a_stalled_older_deployment_overtaken_by_a_newer_run_announces_nothing_and_is_superseded():
    w = world(RETRAIN_COALESCE_SECONDS="0", RETRAIN_CANCEL_SUPERSEDED_JOBS="false")
    w.endpoint("acme")
    older, newer = burst(w, 2)
    taken: list[PromoteResult] = []
    stalls_at_finish(w, older, lambda: taken.append(land(w, w.run(newer.id))))
    land(w, w.run(older.id))
    assert taken and taken[0].status == "Done"
    assert w.studio.endpoints["acme"].model_path == newer.model_path  # the newer model went in last
    w.app.reconciler.reconcile()  # the older run's deployment is decided again: newer data serves now
    assert w.run(newer.id).status == "Deployed"
    assert w.run(older.id).status == "Superseded", w.run(older.id).error
    assert w.outcomes("acme", older.id) == ["Superseded"]
    assert [e.run_id for e in updates(w)] == [newer.id]
    assert_events_agree_with_ledger(w)


def test_a_stalled_newer_deployment_overtaken_by_an_older_run_is_deployed_again_and_announced_last():
    """The lease lost, the pointer never moved: an older run that takes the endpoint meanwhile sees the old pointer
    and goes in. The newer one must not be recorded Deployed on a pointer it never wrote: it is decided again, goes
    in again and is announced with the higher sequence."""
    w = world(RETRAIN_COALESCE_SECONDS="0", RETRAIN_CANCEL_SUPERSEDED_JOBS="false")
    w.endpoint("acme")
    older, newer = burst(w, 2)
    stalls_at_finish(w, newer, lambda: land(w, w.run(older.id)))
    land(w, w.run(newer.id))
    w.app.reconciler.reconcile()
    assert w.run(newer.id).status == "Deployed" and w.outcomes("acme", newer.id) == ["Deployed"]
    assert w.studio.endpoints["acme"].model_path == newer.model_path
    assert_events_agree_with_ledger(w)
    assert [e.run_id for e in sorted(updates(w), key=lambda e: e.sequence)] == [older.id, newer.id]


def test_a_stalled_deployment_finished_by_its_own_redelivery_is_announced_once():
    w = world(RETRAIN_COALESCE_SECONDS="0")
    w.endpoint("acme")
    [run] = burst(w, 1)
    stalls_at_finish(w, run, lambda: land(w, w.run(run.id)))
    land(w, w.run(run.id))
    assert w.run(run.id).status == "Deployed" and w.outcomes("acme", run.id) == ["Deployed"]
    assert len(updates(w)) == 1
    assert_events_agree_with_ledger(w)


def test_an_operators_patch_overtaken_while_it_stalled_announces_nothing():
    w = world(RETRAIN_COALESCE_SECONDS="0", RETRAIN_CANCEL_SUPERSEDED_JOBS="false")
    w.endpoint("acme")
    patched_model, landing = burst(w, 2)

    def expire_and_compete(record: Record) -> None:
        w.ledger.pointers[("default", "acme")].lease_until = time.time() - 1
        land(w, w.run(landing.id))

    at_write(w, "attempt.finish", expire_and_compete,
             when=lambda record: isinstance(record, Deployment) and record.operation == "patch")
    result = w.app.operations.patch_model(None, "acme", str(patched_model.model_path), force=True)
    assert result.outcome == "Pending"
    patches = [d for d in w.ledger.history("default", "acme") if d.operation == "patch"]
    assert [d.outcome for d in patches] == ["Pending"]
    assert [e.run_id for e in updates(w)] == [landing.id]
    assert_events_agree_with_ledger(w)


# ---- what a consumer can tell from the events alone -----------------------------------------------------------------
@pytest.mark.parametrize("arrival", ["in-order", "reversed"])
def test_a_burst_deployed_one_after_another_tells_the_final_model_by_sequence(arrival):
    w = world(RETRAIN_COALESCE_SECONDS="0")
    w.endpoint("acme")
    runs = burst(w, 4)
    for run in runs:  # oldest first: each newer one goes in over the one before
        land(w, w.run(run.id))
    if arrival == "reversed":  # Event Grid does not keep order, nor does an outbox flush after an outage
        w.events.published.reverse()
    events = sorted(updates(w), key=lambda e: e.sequence)
    assert [e.run_id for e in events] == [r.id for r in runs]
    assert [e.previous_model for e in events[1:]] == [e.model for e in events[:-1]]
    assert [e.data_time for e in events] == [w.run(r.id).data_time for r in runs]
    assert_events_agree_with_ledger(w)


def test_a_burst_landing_newest_first_announces_the_newest_alone():
    w = world(RETRAIN_COALESCE_SECONDS="0", RETRAIN_CANCEL_SUPERSEDED_JOBS="false")
    w.endpoint("acme")
    runs = burst(w, 4)
    for run in reversed(runs):
        land(w, w.run(run.id))
    assert [e.run_id for e in updates(w)] == [runs[-1].id]
    assert all(w.run(r.id).status == "Superseded" for r in runs[:-1])
    assert_events_agree_with_ledger(w)


# ---- the queued fan-out records its proofs the same way -------------------------------------------------------------
def test_a_queued_proof_overtaken_while_it_stalled_announces_nothing_for_its_endpoint():
    names = ["ep-0", "ep-1"]
    w = world(RETRAIN_FANOUT_MODE="queue", RETRAIN_ENDPOINTS=",".join(names), RETRAIN_VERIFY_SWITCH_SECONDS="30",
              RETRAIN_VERIFY_POLL_SECONDS="2")
    for name in names:
        w.endpoint(name)
    run = w.trained("everyone.csv")
    other = w.trained("ep-0/other.csv", seed=7)  # a model an operator puts on ep-0 while the proof stalls

    def overtake(record: Record) -> None:
        w.ledger.pointers[("default", "ep-0")].lease_until = time.time() - 1
        w.app.operations.patch_model(None, "ep-0", str(other.model_path), force=True)

    at_write(w, "attempt.finish", overtake,
             when=lambda record: isinstance(record, Deployment) and record.run_id == run.id
             and record.endpoint == "ep-0" and record.outcome == "Deployed")
    land(w, w.run(run.id))
    assert w.app.fanout_work is not None
    w.queue.drain(lambda body, count: w.app.fanout_work.handle(body))  # type: ignore[union-attr]
    for name in names:
        assert_events_agree_with_ledger(w, name)
    assert [d.outcome for d in w.ledger.history("default", "ep-1") if d.run_id == run.id] == ["Deployed"]
    assert all(d.outcome != "Deployed" for d in w.ledger.history("default", "ep-0") if d.run_id == run.id) or \
        w.ledger.current("default", "ep-0").deployment_id == f"run-{run.id}"  # type: ignore[union-attr]


# ---- an inline fan-out recorded in several batches ----------------------------------------------------------------
def test_each_record_batch_of_an_inline_fan_out_sends_only_its_own_endpoints_announcements(monkeypatch):
    """Review of ea0ce21: one EventBatch served every record call of an inline fan-out, and each call stored (then
    sent) everything gathered so far - the announcements of endpoints a later call would record too. When that later
    call's pointer write was refused, its announcement had already gone out. Now a record call stores and sends the
    events of the endpoints it records, no others."""
    import shared.usecases.fanout as fanout_module

    monkeypatch.setattr(fanout_module, "FLUSH_SECONDS", 0.0)  # every finished endpoint recorded on its own
    names = [f"ep-{i}" for i in range(6)]
    w = world(RETRAIN_FANOUT_MODE="inline", RETRAIN_PATCH_CONCURRENCY="6", RETRAIN_ENDPOINTS=",".join(names))
    for name in names:
        w.endpoint(name)
    run = w.trained("fleet.csv", seed=3)
    recorded: list[list[str]] = []
    published_at_refusal: list[str] = []
    real_finish_many = w.ledger.finish_many

    def finish_many(done: list[Any], owner: str) -> list[Deployment]:
        batch = [d.endpoint for d, _ in done]
        recorded.append(batch)
        if len(recorded) == 1:
            time.sleep(0.3)  # the first write is slow: every other endpoint finishes (and gathers its event)
        elif "ep-4" in batch:  # its lease was taken over meanwhile: this pointer write is refused
            published_at_refusal.extend(e.endpoint for e in w.events.of(EndpointUpdated))
            taken = w.ledger.pointers[("default", "ep-4")]
            taken.lease_owner, taken.etag = "someone-else", 'W/"taken-over"'  # (the row changed since it was read)
        return real_finish_many(done, owner)

    monkeypatch.setattr(w.ledger, "finish_many", finish_many)
    w.app.promotion.promote(run)
    w.events.flush()
    assert len(recorded) > 1 and published_at_refusal, (recorded, published_at_refusal)  # the race is made
    assert "ep-4" not in published_at_refusal, (recorded, published_at_refusal)  # not before its pointer's write
    assert "ep-4" not in [e.endpoint for e in w.events.of(EndpointUpdated)]  # nor ever (withdrawn)
    dep = w.ledger.get_deployment("default", "ep-4", f"run-{run.id}")
    assert dep is not None and dep.outcome != "Deployed"
