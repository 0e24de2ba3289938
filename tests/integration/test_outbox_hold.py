"""The outbox's hold, on the real publisher and table (review of ea0ce21): a batch's stored events are its writer's
until it sends or takes them back; a row whose writer never finished (it died between storing and sending, or could
not take an announcement back) is sent after the hold only as far as the ledger records what it announces, and
taking one announcement back never loses the others stored with it."""

from __future__ import annotations

import time
import uuid
from typing import Any

from azure.core.exceptions import HttpResponseError

from shared.events import EndpointUpdated, RunApproved
from shared.records import Deployment


def updated(mark: str, endpoint: str, deployment: str) -> EndpointUpdated:
    return EndpointUpdated(subject=f"default/{mark}-{endpoint}", run_id="r1", endpoint=f"{mark}-{endpoint}",
                           target="default", model="models/r1/model.ilearner", operation="promote",
                           deployment_id=deployment)


def end_holds(h: Any) -> None:
    """The hold's 600 s have passed (as after a writer died): the rows' heldUntil set in the past."""
    table = h.app.events.outbox.table
    for row in table.query_entities("PartitionKey eq 'pending'"):
        if float(row.get("heldUntil") or 0.0) > 0.0:
            table.update_entity({"PartitionKey": "pending", "RowKey": row["RowKey"], "heldUntil": 1.0})


def received(h: Any, mark: str) -> list[str]:
    return sorted(str(e["subject"]).split("/", 1)[1] for e in h.events() if mark in str(e.get("subject")))


def flush_until(h: Any, mark: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(received(h, mark)) < count and time.monotonic() < deadline:
        h.app.events.flush()
        time.sleep(0.2)
    time.sleep(0.3)
    return received(h, mark)


def test_a_dead_writers_rows_are_sent_after_the_hold_only_as_far_as_the_ledger_records_them(harness):
    h = harness()
    mark = f"h{uuid.uuid4().hex[:8]}"
    recorded = Deployment(id="run-kept", target="default", endpoint=f"{mark}-kept", operation="promote",
                          outcome="Deployed", model_path="models/r1/model.ilearner", trigger="test")
    h.app.ledger.add_deployment(recorded)
    batch = h.app.events.batch()
    with batch.gathering():
        h.app.events.publish(updated(mark, "kept", "run-kept"))  # the ledger took this change
        h.app.events.publish(updated(mark, "never", "run-never"))  # the writer died before the ledger took it
        h.app.events.publish(RunApproved(subject=f"x/{mark}-approved", run_id="r1", by="alice"))
    batch.store()  # ... and the writer dies here: nothing sent, nothing released
    h.app.events.flush()
    time.sleep(0.3)
    assert received(h, mark) == []  # held
    end_holds(h)
    assert flush_until(h, mark, 2) == [f"{mark}-approved", f"{mark}-kept"]  # not the unrecorded announcement
    assert not [r for r in h.app.events.outbox.table.query_entities("PartitionKey eq 'pending'")
                if mark in str(r.get("events"))]  # the row is gone, the dropped event with it


def test_taking_one_announcement_back_keeps_the_rest_even_when_the_outbox_write_fails(harness, monkeypatch):
    h = harness()
    mark = f"w{uuid.uuid4().hex[:8]}"
    for endpoint in ("a", "b"):
        h.app.ledger.add_deployment(Deployment(id=f"run-{endpoint}", target="default", endpoint=f"{mark}-{endpoint}",
                                               operation="promote", outcome="Deployed", trigger="test",
                                               model_path="models/r1/model.ilearner"))
    batch = h.app.events.batch()
    with batch.gathering():
        for endpoint in ("a", "refused", "b"):
            h.app.events.publish(updated(mark, endpoint, f"run-{endpoint}"))
    stored = batch.store()

    def fails(*args: Any, **kwargs: Any) -> None:
        raise HttpResponseError("the table did not answer")

    monkeypatch.setattr(h.app.events.outbox, "rewrite", fails)
    monkeypatch.setattr(h.app.events.outbox, "remove", fails)
    left = batch.withdraw(stored, lambda kind, subject, data: data.get("deploymentId") == "run-refused")
    monkeypatch.undo()
    h.fault(route="eventgrid.publish", status=503, count=100000)  # and the topic is down when it sends
    try:
        batch.send(left)
    finally:
        h.clear_faults()
    time.sleep(0.3)
    assert received(h, mark) == []
    end_holds(h)  # (a failed send released the rows at once; a row nobody released waits for its hold)
    got = flush_until(h, mark, 2)
    assert got == [f"{mark}-a", f"{mark}-b"]  # nothing lost, the refused one never sent


def test_a_dead_writers_announcement_of_an_attempt_that_went_live_later_under_another_sequence_is_not_sent(harness):
    """Second review: the confirmation was by deployment id only - an attempt whose first announcement was refused
    (sequence 5) and that a retry then made live (sequence 6) had its stale announcement sent too."""
    h = harness()
    mark = f"s{uuid.uuid4().hex[:8]}"
    h.app.ledger.add_deployment(Deployment(id="run-again", target="default", endpoint=f"{mark}-ep",
                                           operation="promote", outcome="Deployed", trigger="test", sequence=6,
                                           model_path="models/r1/model.ilearner"))
    stale = updated(mark, "ep", "run-again").model_copy(update={"sequence": 5})
    live = updated(mark, "ep", "run-again").model_copy(update={"sequence": 6})
    batch = h.app.events.batch()
    with batch.gathering():
        h.app.events.publish(stale)
        h.app.events.publish(live)
    batch.store()  # the writer dies
    end_holds(h)
    flush_until(h, mark, 1)
    got = [e["data"].get("sequence") for e in h.events() if mark in str(e.get("subject"))]
    assert got == [6]
