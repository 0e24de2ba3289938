"""The events port's contract, on FakeEvents and on the Event Grid publisher with its outbox (the emulator's topic):
what is published reaches the topic once, a fan-out's batch from many threads arrives whole, and an outage delays
events without losing one."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from shared.events import EndpointUpdated, RunApproved
from tests.contract.conftest import Sinks


def wait_for(sinks: Sinks, count: int, seconds: float = 10) -> list[dict]:
    deadline = time.monotonic() + seconds
    while len(got := sinks.received()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def flush_until_received(sinks: Sinks) -> None:
    """Flush as reconcile does, until the topic has something (the publisher leaves a failing topic alone a while)."""
    deadline = time.monotonic() + 40
    while not sinks.received() and time.monotonic() < deadline:
        sinks.sink.flush()
        time.sleep(0.2)


def updated(sinks: Sinks, endpoint: str) -> EndpointUpdated:
    return EndpointUpdated(subject=f"{sinks.mark}/{endpoint}", run_id="r1", endpoint=endpoint, target="default",
                           model="models/r1/model.ilearner", metrics={"AUC": 0.9}, operation="promote",
                           deployment_id="run-r1")


def test_an_event_reaches_the_topic_once_with_its_data(sinks: Sinks):
    event = RunApproved(subject=f"{sinks.mark}/run", run_id="r1", by="alice")
    sinks.sink.publish(event)
    wait_for(sinks, 1)
    time.sleep(0.2)
    got = sinks.received()
    assert [(e["type"], e["data"]) for e in got] == [("Retrain.RunApproved", {"runId": "r1", "by": "alice"})]


def test_a_batch_gathered_from_threads_arrives_whole_after_it_is_sent(sinks: Sinks):
    batch = sinks.sink.batch()

    def work(i: int) -> None:
        with batch.gathering():
            sinks.sink.publish(updated(sinks, f"e{i:03d}"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(40)))
    assert sinks.received() == []  # gathered, not sent
    stored = batch.store()
    batch.send(stored)
    got = wait_for(sinks, 40)
    assert sorted(e["data"]["endpoint"] for e in got) == [f"e{i:03d}" for i in range(40)]


def test_an_outage_delays_events_and_flush_sends_them_later(sinks: Sinks):
    sinks.outage(True)
    late = RunApproved(subject=f"{sinks.mark}/late", run_id="r2", by="bob")
    sinks.sink.publish(late)
    sinks.sink.publish(late)  # announced again while it waits: it waits once
    time.sleep(0.2)
    assert sinks.received() == []
    sinks.outage(False)
    flush_until_received(sinks)
    assert [e["data"]["runId"] for e in sinks.received()] == ["r2"]


def test_stored_events_are_held_from_flush_until_their_writer_sends_them(sinks: Sinks):
    """A batch's stored events are the writer's until it sends or withdraws them (issue 21): a flush meanwhile -
    reconcile's, on another instance - sends none of them, so an announcement about to be withdrawn never leaks."""
    batch = sinks.sink.batch()
    with batch.gathering():
        sinks.sink.publish(updated(sinks, "held"))
    stored = batch.store()
    sinks.sink.flush()
    time.sleep(0.3)
    assert sinks.received() == []  # held: the flush left it to its writer
    batch.send(stored)
    assert [e["data"]["endpoint"] for e in wait_for(sinks, 1)] == ["held"]
    sinks.sink.flush()
    time.sleep(0.3)
    assert len(sinks.received()) == 1  # sent once


def test_a_withdrawn_announcement_is_never_sent_and_the_rest_of_its_batch_is(sinks: Sinks):
    batch = sinks.sink.batch()
    with batch.gathering():
        for endpoint in ("kept", "refused", "also-kept"):
            sinks.sink.publish(updated(sinks, endpoint))
    stored = batch.withdraw(batch.store(), lambda kind, subject, data: kind == "EndpointUpdated" and
                            data.get("endpoint") == "refused")
    batch.send(stored)
    wait_for(sinks, 2)
    sinks.sink.flush()
    time.sleep(0.3)
    assert sorted(e["data"]["endpoint"] for e in sinks.received()) == ["also-kept", "kept"]


def test_a_batch_its_writer_could_not_send_is_released_to_the_next_flush(sinks: Sinks):
    """The hold is for the writer's invocation only: a send that fails (the topic down) hands the events to the
    next flush at once, not after the hold."""
    batch = sinks.sink.batch()
    with batch.gathering():
        sinks.sink.publish(updated(sinks, "released"))
    stored = batch.store()
    sinks.outage(True)
    batch.send(stored)
    sinks.outage(False)
    flush_until_received(sinks)
    assert [e["data"]["endpoint"] for e in sinks.received()] == ["released"]
