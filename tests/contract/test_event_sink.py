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
    deadline = time.monotonic() + 40  # the publisher leaves a failing topic alone for a while
    while not sinks.received() and time.monotonic() < deadline:
        sinks.sink.flush()
        time.sleep(0.2)
    assert [e["data"]["runId"] for e in sinks.received()] == ["r2"]
