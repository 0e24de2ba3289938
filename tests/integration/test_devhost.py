"""devhost on its own, with a small app of its own (not the product's) against Azurite: HTTP routing, the Event
Grid blob webhook (handshake, 202, the binding, receipts, retries, poison) and timers firing on their schedule."""

from __future__ import annotations

import json
import threading
import time
import uuid
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from tests.support.devhost import serving
from tests.support.devhost import wait_for as wait_until
from tools.devhost.host import DevHost, HostOptions
from tools.devhost.indexing import index
from tools.localdev.ports import free_port

calls: dict[str, list[Any]] = {"blobs": [], "ticks": [], "failures": []}
first_version_held = threading.Event()  # a "slow" blob's first version waits on it


def build_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="items/{id}", methods=["GET"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"id": req.route_params["id"], "q": req.params.get("q")}),
                                 mimetype="application/json", headers={"X-Seen": "yes"})

    @app.route(route="boom", methods=["POST"])
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("unhandled")

    @app.blob_trigger(arg_name="blob", path="inbox/{name}", connection="AzureWebJobsStorage",
                      source=func.BlobSource.EVENT_GRID)
    def landed(blob: func.InputStream, context: func.Context) -> None:
        if "fail" in (blob.name or ""):
            calls["failures"].append(context.retry_context.retry_count)
            raise RuntimeError("this blob always fails")
        data = blob.read()
        calls["blobs"].append((blob.name, data))
        if "slow" in (blob.name or "") and data == b"v1":
            first_version_held.wait(20)

    @app.timer_trigger(arg_name="timer", schedule="%TICK%")
    def tick(timer: func.TimerRequest) -> None:
        calls["ticks"].append(time.monotonic())

    return app


@pytest.fixture(scope="module")
def devhost(storage_connection_string: str) -> Iterator[tuple[str, str]]:
    env = {"AzureWebJobsStorage": storage_connection_string, "TICK": "*/1 * * * * *"}
    specs = index(build_app(), env)
    host_json = {"extensions": {"blobs": {"poisonBlobThreshold": 2}, "queues": {"visibilityTimeout": "00:00:00"}}}
    host = DevHost(specs, HostOptions(Path("."), host_json, env, port=free_port()))
    with serving([host]):
        yield host.base_url, storage_connection_string


def wait_for(check: Any, timeout: float = 20) -> Any:
    return wait_until(check, timeout)


def test_http_routes_route_parameters_and_errors(devhost):
    base, _ = devhost
    resp = requests.get(f"{base}/api/items/42?q=x", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"id": "42", "q": "x"} and resp.headers["X-Seen"] == "yes"
    assert requests.post(f"{base}/api/items/42", timeout=10).status_code == 405
    assert requests.get(f"{base}/api/nothing", timeout=10).status_code == 404
    assert requests.post(f"{base}/api/boom", timeout=10).status_code == 500


def blob_event(storage: str, name: str, etag: str = "") -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "eventType": "Microsoft.Storage.BlobCreated",
             "subject": f"/blobServices/default/containers/inbox/blobs/{name}", "eventTime": "2026-01-01T00:00:00Z",
             "data": {"url": f"http://127.0.0.1/devstoreaccount1/inbox/{name}", "eTag": etag},
             "dataVersion": "", "metadataVersion": "1"}]


def test_the_blob_webhook_validates_then_runs_each_blob_once_per_etag(devhost):
    base, storage = devhost
    hook = f"{base}/runtime/webhooks/blobs?functionName=Host.Functions.landed"
    code = str(uuid.uuid4())
    validation = [{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "data": {"validationCode": code}, "subject": "", "eventTime": "2026-01-01T00:00:00Z"}]
    resp = requests.post(hook, json=validation, headers={"aeg-event-type": "SubscriptionValidation"}, timeout=10)
    assert resp.json() == {"validationResponse": code}
    assert requests.post(f"{base}/runtime/webhooks/blobs?functionName=Host.Functions.nope", json=[],
                         headers={"aeg-event-type": "Notification"}, timeout=10).status_code == 404

    blobs = BlobServiceClient.from_connection_string(storage)
    container = blobs.get_container_client("inbox")
    if not container.exists():
        container.create_container()
    name = f"a/{uuid.uuid4().hex[:6]}.txt"
    container.upload_blob(name, b"hello")
    for _ in range(3):  # at-least-once delivery: the same blob three times
        resp = requests.post(hook, json=blob_event(storage, name), headers={"aeg-event-type": "Notification"},
                             timeout=10)
        assert resp.status_code == 202
    wait_for(lambda: (f"inbox/{name}", b"hello") in calls["blobs"])
    time.sleep(0.5)
    assert calls["blobs"].count((f"inbox/{name}", b"hello")) == 1
    other = blob_event(storage, "x.txt")
    other[0]["subject"] = "/blobServices/default/containers/elsewhere/blobs/x.txt"
    assert requests.post(hook, json=other, headers={"aeg-event-type": "Notification"}, timeout=10).json() == \
        {"queued": 0}


def test_a_new_version_landing_while_the_old_one_is_processed_is_processed_too(devhost):
    """Issue 21: devhost dropped a delivery for a blob name still in progress, so a new version of a training file
    landing while the old one was processed was never seen; the host keys receipts by ETag, and so does devhost."""
    base, storage = devhost
    container = BlobServiceClient.from_connection_string(storage).get_container_client("inbox")
    if not container.exists():
        container.create_container()
    hook = f"{base}/runtime/webhooks/blobs?functionName=Host.Functions.landed"
    name = f"slow-{uuid.uuid4().hex[:6]}.txt"
    try:
        blob = container.get_blob_client(name)
        first = blob.upload_blob(b"v1")
        requests.post(hook, json=blob_event(storage, name, first["etag"]), headers={"aeg-event-type": "Notification"},
                      timeout=10)
        wait_for(lambda: (f"inbox/{name}", b"v1") in calls["blobs"])  # being processed, and held there
        second = blob.upload_blob(b"v2", overwrite=True)
        for _ in range(2):  # the new version, delivered twice: processed once, while the first is still held
            requests.post(hook, json=blob_event(storage, name, second["etag"]),
                          headers={"aeg-event-type": "Notification"}, timeout=10)
        wait_for(lambda: (f"inbox/{name}", b"v2") in calls["blobs"], timeout=10)
    finally:
        first_version_held.set()
    time.sleep(0.5)
    assert calls["blobs"].count((f"inbox/{name}", b"v2")) == 1 and calls["blobs"].count((f"inbox/{name}", b"v1")) == 1


def test_a_failing_blob_is_retried_to_the_threshold_then_poisoned(devhost):
    base, storage = devhost
    container = BlobServiceClient.from_connection_string(storage).get_container_client("inbox")
    if not container.exists():
        container.create_container()
    name = f"fail-{uuid.uuid4().hex[:6]}.txt"
    container.upload_blob(name, b"x")
    requests.post(f"{base}/runtime/webhooks/blobs?functionName=Host.Functions.landed",
                  json=blob_event(storage, name), headers={"aeg-event-type": "Notification"}, timeout=10)
    queue = QueueClient.from_connection_string(storage, "webjobs-blobtrigger-poison")

    def poisoned() -> list[Any]:
        try:
            return [m for m in queue.peek_messages(32) if json.loads(b64decode(m.content))["BlobName"] == name]
        except ResourceNotFoundError:  # the queue appears with the first message
            return []

    # Base64, as the storage extension writes its queues (messageEncoding): a queue trigger on it can read it
    message = json.loads(b64decode(wait_for(poisoned)[0].content))
    assert message["FunctionId"] == "Host.Functions.landed" and message["ContainerName"] == "inbox"
    assert calls["failures"][-2:] == [0, 1]  # two tries, retry_context counting them


def test_timers_fire_on_their_ncrontab_schedule(devhost):
    start = len(calls["ticks"])
    wait_for(lambda: len(calls["ticks"]) >= start + 2, timeout=10)
    gaps = [b - a for a, b in zip(calls["ticks"][start:], calls["ticks"][start + 1:], strict=False)]
    # never twice in a second; at most one second skipped when the machine is busy (the schedule counts from now)
    assert all(0.5 < gap < 2.6 for gap in gaps)
