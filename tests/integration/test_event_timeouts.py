"""The event publisher's wait is bounded (issue 21): a topic that accepts connections and never answers costs a
publish less than an endpoint lease (it outlived the lease before the transport carried its timeouts), and the
event waits in the outbox."""

from __future__ import annotations

import time
from typing import Any

from shared.adapters.events import EventPublisher
from shared.events import RunApproved
from shared.settings import load_settings
from tests.unit.test_timeouts import silent_server  # noqa: F401 - the fixture


class ListOutbox:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def add(self, *row: Any) -> bool:
        self.rows.append(row)
        return True


def test_a_silent_topic_costs_a_publish_less_than_a_lease_and_the_event_waits(silent_server):  # noqa: F811
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                              "RETRAIN_BES_URL": "http://127.0.0.1:1/w/s", "RETRAIN_BES_KEY": "k" * 10,
                              "RETRAIN_MANAGEMENT_URL": "http://127.0.0.1:1/workspaces/w/webservices/s",
                              "RETRAIN_MANAGEMENT_KEY": "k" * 10, "RETRAIN_RESOURCE_NAME": "r",
                              "RETRAIN_EVENTGRID_ENDPOINT": f"{silent_server}/api/events",
                              "RETRAIN_EVENTGRID_KEY": "k" * 10})
    outbox = ListOutbox()
    publisher = EventPublisher(settings, outbox)  # type: ignore[arg-type]
    started = time.monotonic()
    publisher.publish(RunApproved(subject="s", run_id="r", by="me"))
    took = time.monotonic() - started
    assert took < settings.lease_seconds / 2, took
    assert len(outbox.rows) == 1  # stored before the send: it waits for the next flush
    started = time.monotonic()
    publisher.publish(RunApproved(subject="s", run_id="r2", by="me"))  # the topic just failed: not tried again now
    assert time.monotonic() - started < 1 and len(outbox.rows) == 2
