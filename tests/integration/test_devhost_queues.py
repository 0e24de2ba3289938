"""devhost's queue triggers with a small app of its own against Azurite, run as two instances (two hosts on one
storage account, as scaled-out instances): every message is processed once by one of them and deleted, Base64 JSON
arrives as the worker hands it over, a message that keeps failing is retried with its dequeue count up and moved to
`<queue>-poison` after maxDequeueCount, and a message made visible later is taken only then."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from tests.support.devhost import serving
from tests.support.devhost import wait_for as wait_until
from tools.devhost.host import DevHost, HostOptions
from tools.devhost.indexing import index
from tools.localdev.ports import free_port

QUEUE = f"devhostq{uuid.uuid4().hex[:10]}"
seen: list[tuple[str, int, str, float]] = []  # (body's n, dequeue count, host, when)
lock = threading.Lock()


def build_app(host_name: str) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
    def work(msg: func.QueueMessage) -> None:
        body = msg.get_json()
        with lock:
            seen.append((str(body["n"]), int(msg.dequeue_count or 0), host_name, time.monotonic()))
        if body.get("fail"):
            raise RuntimeError("this message always fails")
        time.sleep(0.02)

    return app


@pytest.fixture(scope="module")
def instances(storage_connection_string: str) -> Iterator[QueueClient]:
    env = {"AzureWebJobsStorage": storage_connection_string, "WORK_QUEUE": QUEUE}
    host_json = {"extensions": {"queues": {"maxDequeueCount": 3, "visibilityTimeout": "00:00:00",
                                           "maxPollingInterval": "00:00:00.500", "batchSize": 4}}}
    hosts = [DevHost(index(build_app(f"i{i}"), env), HostOptions(Path("."), host_json, env, port=free_port()))
             for i in range(2)]
    client = QueueClient.from_connection_string(storage_connection_string, QUEUE)
    try:
        with serving(hosts):
            yield client
    finally:
        client.delete_queue()
        QueueClient.from_connection_string(storage_connection_string, f"{QUEUE}-poison").delete_queue()


def send(client: QueueClient, body: dict[str, Any], delay: int | None = None) -> None:
    client.send_message(base64.b64encode(json.dumps(body).encode()).decode(), visibility_timeout=delay)


def wait_for(check: Any, timeout: float = 30) -> Any:
    return wait_until(check, timeout)


def test_two_instances_share_the_messages_and_each_is_processed_once(instances: QueueClient):
    for n in range(40):
        send(instances, {"n": f"m{n}"})
    wait_for(lambda: len({s[0] for s in seen if s[0].startswith("m")}) == 40)
    time.sleep(1)
    mine = [s for s in seen if s[0].startswith("m")]
    assert len(mine) == 40 and {s[1] for s in mine} == {1}  # once each, at the first try
    assert {s[2] for s in mine} == {"i0", "i1"}  # both instances took some
    wait_for(lambda: instances.get_queue_properties().approximate_message_count == 0, 10)  # all deleted


def test_a_failing_message_is_retried_then_poisoned_after_max_dequeue_count(instances: QueueClient,
                                                                          storage_connection_string: str):
    send(instances, {"n": "bad", "fail": True})
    poison = QueueClient.from_connection_string(storage_connection_string, f"{QUEUE}-poison")
    got = wait_for(lambda: list(poison.peek_messages(max_messages=5)) if poison_exists(poison) else [])
    assert [json.loads(base64.b64decode(str(m.content))) for m in got] == [{"n": "bad", "fail": True}]
    assert [s[1] for s in seen if s[0] == "bad"] == [1, 2, 3]


def poison_exists(poison: QueueClient) -> bool:
    try:
        poison.get_queue_properties()
        return True
    except Exception:
        return False


def test_a_message_made_visible_later_is_taken_only_then(instances: QueueClient):
    sent = time.monotonic()
    send(instances, {"n": "later"}, delay=2)
    at = wait_for(lambda: [s[3] for s in seen if s[0] == "later"])
    assert at[0] - sent >= 1.9
