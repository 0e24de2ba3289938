"""The work queue port's contract, on FakeQueue and on the Azure Storage queue adapter (Azurite): a message comes
back as it was sent, a delayed one only when due, one taken and not deleted comes back (its dequeue count up), a
deleted one never; a pause mark is seen by every instance; the real queue's messages are Base64 JSON, as the
Functions host's queue trigger reads them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from azure.storage.queue import QueueClient

from shared.adapters.work_queue import StorageWorkQueue
from shared.ports.queues import WorkQueue
from tests.contract.conftest import KINDS
from tests.fakes.queues import FakeQueue


@dataclass
class Queues:
    queue: WorkQueue
    other: WorkQueue  # another instance's client of the same queue
    wait: Callable[[float], None]  # time passing
    raw: Callable[[], list[str]] | None = None  # the queue's message texts as stored (real only)


@pytest.fixture(params=KINDS)
def queues(request: pytest.FixtureRequest) -> Iterator[Queues]:
    if request.param == "fake":
        fake = FakeQueue()

        def move(seconds: float) -> None:
            fake.offset += seconds

        yield Queues(fake, fake, move)
        return
    settings = request.getfixturevalue("harness")().app.settings
    name = f"contract-{uuid.uuid4().hex[:12]}"
    queue, other = StorageWorkQueue(settings, name), StorageWorkQueue(settings, name)
    queue.ensure()
    assert settings.storage_connection_string is not None
    plain = QueueClient.from_connection_string(settings.storage_connection_string.get_secret_value(), name)
    yield Queues(queue, other, time.sleep, lambda: [str(m.content) for m in plain.peek_messages(max_messages=32)])
    queue.client.delete_queue()


def test_a_message_comes_back_as_sent_and_is_gone_once_deleted(queues: Queues):
    body = {"kind": "deploy", "run": "r1", "endpoints": ["a", "b"], "model": {"path": "models/r1/m.ilearner"}}
    queues.queue.send(body)
    got = queues.other.receive(16, 30)
    assert [(m.body, m.dequeue_count) for m in got] == [(body, 1)]
    queues.other.delete(got[0])
    assert queues.queue.receive(16, 30) == [] and queues.queue.depth() == 0


def test_a_delayed_message_is_due_only_after_its_delay(queues: Queues):
    queues.queue.send({"kind": "prove", "n": 1}, delay_seconds=2)
    assert queues.queue.receive(16, 30) == [] and queues.queue.depth() == 1
    queues.wait(2.5)
    assert [m.body["n"] for m in queues.queue.receive(16, 30)] == [1]


def test_a_message_taken_and_not_deleted_comes_back_with_its_dequeue_count_up(queues: Queues):
    queues.queue.send({"n": 2})
    first = queues.queue.receive(16, 1)
    assert len(first) == 1 and queues.other.receive(16, 1) == []  # hidden from everyone while taken
    queues.wait(1.5)
    again = queues.other.receive(16, 30)
    assert [(m.body["n"], m.dequeue_count) for m in again] == [(2, 2)]


def test_a_pause_is_seen_by_every_instance_and_only_grows(queues: Queues):
    until = queues.queue.now() + 60
    assert queues.other.paused_until("throttle-default") == 0
    queues.queue.pause("throttle-default", until)
    queues.queue.pause("throttle-default", until - 30)  # a shorter pause does not shorten it
    queues.wait(1.1)  # past the instances' cache of the marks
    assert abs(queues.other.paused_until("throttle-default") - until) < 0.01
    assert queues.other.paused_until("throttle-other") == 0


def test_the_real_queue_carries_base64_json_as_the_functions_host_reads_it(queues: Queues):
    if queues.raw is None:
        pytest.skip("the fake stores no wire format")
    queues.queue.send({"kind": "tally", "run": "r1"})
    assert [json.loads(base64.b64decode(t)) for t in queues.raw()] == [{"kind": "tally", "run": "r1"}]
