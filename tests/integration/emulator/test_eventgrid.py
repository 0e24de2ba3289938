"""The Event Grid stand-ins: a custom topic (schemas, auth, kept events) and storage BlobCreated deliveries."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

from tests.integration.emulator.studio import Studio
from tests.integration.emulator.webhook import WebhookReceiver


@pytest.fixture(scope="module")
def studio(shared_emulator) -> Studio:
    return Studio(shared_emulator.manifest)


def received(studio, topic="retrain"):
    return requests.get(f"{studio.m['admin_url']}/eventgrid/topics/{topic}/events", timeout=10).json()


def test_sdk_publishes_cloud_events_to_the_topic(studio):
    eg = studio.m["eventgrid"]
    client = EventGridPublisherClient(eg["topic_endpoint"], AzureKeyCredential(eg["topic_key"]))
    marker = uuid.uuid4().hex
    client.send([CloudEvent(source="/tests", type="Retrain.Test", data={"marker": marker})])
    events = [e["event"] for e in received(studio)]
    mine = [e for e in events if e.get("data", {}).get("marker") == marker]
    assert len(mine) == 1 and mine[0]["specversion"] == "1.0" and mine[0]["type"] == "Retrain.Test"


def test_wrong_schema_and_wrong_key_are_refused(studio):
    eg = studio.m["eventgrid"]
    client = EventGridPublisherClient(eg["topic_endpoint"], AzureKeyCredential(eg["topic_key"]))
    with pytest.raises(HttpResponseError) as info:
        client.send([EventGridEvent(subject="s", event_type="Retrain.Test", data={}, data_version="1.0")])
    assert info.value.status_code == 400 and "schema" in str(info.value)
    bad = EventGridPublisherClient(eg["topic_endpoint"], AzureKeyCredential("wrong"))
    with pytest.raises(HttpResponseError) as info:
        bad.send([CloudEvent(source="/tests", type="Retrain.Test", data={})])
    assert info.value.status_code == 401


def test_event_grid_schema_topic_accepts_event_grid_events(studio):
    created = requests.put(f"{studio.m['admin_url']}/eventgrid/topics/egschema",
                           json={"schema": "EventGridSchema"}, timeout=10).json()
    client = EventGridPublisherClient(created["topic_endpoint"], AzureKeyCredential(created["topic_key"]))
    client.send([EventGridEvent(subject="a/b", event_type="Retrain.Test", data={"n": 1}, data_version="1.0")])
    assert [e["event"]["subject"] for e in received(studio, "egschema")] == ["a/b"]
    with pytest.raises(HttpResponseError):
        client.send([CloudEvent(source="/tests", type="Retrain.Test", data={})])


def test_blob_created_events_reach_a_subscribed_webhook(studio):
    hook = WebhookReceiver()
    try:
        sub = requests.post(f"{studio.m['admin_url']}/storage-events/subscriptions", json={
            "endpoint": hook.url, "subject_begins_with": "/blobServices/default/containers/landing/"},
            timeout=10).json()
        name = f"dir/{uuid.uuid4().hex}.csv"
        studio.upload("landing", name, "a,b\n1,2\n")
        studio.upload("elsewhere", name, "a,b\n1,2\n")
        events = hook.wait_for(lambda e: e["subject"].endswith(name))
        assert len(events) == 1
        ev = events[0]
        assert ev["eventType"] == "Microsoft.Storage.BlobCreated"
        assert ev["subject"] == f"/blobServices/default/containers/landing/blobs/{name}"
        assert ev["data"]["url"].endswith(f"/landing/{name}") and ev["data"]["contentLength"] == 8
        assert ev["data"]["eTag"] and ev["data"]["blobType"] == "BlockBlob" and ev["topic"].endswith(
            "/storageAccounts/devstoreaccount1")
        assert set(ev) >= {"id", "eventTime", "dataVersion", "metadataVersion"}
        assert hook.validations == 1
        assert hook.headers[0]["aeg-event-type"] == "Notification"
        time.sleep(1.0)
        assert not [n for n in hook.notifications if "/elsewhere/" in n["subject"]]
        requests.delete(f"{studio.m['admin_url']}/storage-events/subscriptions/{sub['id']}", timeout=10)
    finally:
        hook.close()


def test_deliveries_are_retried_until_the_webhook_answers(start_emulator):
    hook = WebhookReceiver(fail_first=2)
    try:
        emu = start_emulator("--subscribe", f"retry={hook.url}")
        studio = Studio(emu.manifest)
        studio.upload("retry", "x.csv", "a\n1\n")
        events = hook.wait_for(lambda e: e["subject"].endswith("/retry/blobs/x.csv"), timeout=30)
        assert len(events) == 1
        assert hook.headers[-1]["aeg-delivery-count"] == "2"
    finally:
        hook.close()


def test_a_subscription_added_later_gets_what_is_written_after_it_not_what_was_there(start_emulator):
    """The emulator lists only the containers a subscription watches (none: nothing is listed - an idle emulator
    listed the whole shared Azurite every 0.5 s); a container watched for the first time takes as news only what
    is written after the subscription, as Event Grid does."""
    hook = WebhookReceiver()
    try:
        emu = start_emulator()
        studio = Studio(emu.manifest)
        container = f"late{uuid.uuid4().hex[:8]}"
        studio.upload(container, "before.csv", "a\n1\n")
        time.sleep(2.5)  # Last-Modified has one-second resolution
        requests.post(f"{emu.manifest['admin_url']}/storage-events/subscriptions", json={
            "endpoint": hook.url, "subject_begins_with": f"/blobServices/default/containers/{container}/"},
            timeout=10).raise_for_status()
        studio.upload(container, "after.csv", "a\n2\n")
        events = hook.wait_for(lambda e: e["subject"].endswith("/after.csv"), timeout=30)
        assert len(events) == 1
        studio.upload(container, "before.csv", "a\n3\n")  # a new version of a blob that was there: news
        hook.wait_for(lambda e: e["subject"].endswith("/before.csv"), timeout=30)
        assert [n["subject"].rsplit("/", 1)[1] for n in hook.notifications] == ["after.csv", "before.csv"]
    finally:
        hook.close()
