"""The event outbox (a ledger table): every `Retrain.*` event is stored before it is sent and removed once the
topic took it, so a topic outage delays events instead of dropping them.

Two kinds of row: one event (`add`, keyed by the event's id, which is derived from its content: the same event
announced twice is stored once), and a group of events (`add_many`, a fan-out's: as many events to a row as fit
one table property, keyed by a hash of their ids, so storing the same group again rewrites the same row) - a
10,000-endpoint fan-out writes and deletes about 200 rows, not 10,000. Readers see events either way (`pending`);
a row is removed once every event in it was sent. A fan-out's rows are held from `pending` while their writer records
the outcomes they announce (see `EventPublisher.store`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters.transactions import submit_transaction

PARTITION = "pending"
GROUP_PREFIX = "group-"
GROUP_EVENTS = 100  # events per group row: one Event Grid request (at most 1 MB)
GROUP_CHARS = 30_000  # a table string property holds 32K UTF-16 code units; the JSON is ASCII (ensure_ascii)

StoredEvent = tuple[str, str, str, Any, str]  # id, type (without "Retrain."), subject, data, time (ISO 8601)


@dataclass
class Group:
    """The row a group of events is stored in, and the events."""

    row: str
    events: list[StoredEvent] = field(default_factory=list)


def group_rows(events: list[StoredEvent]) -> list[tuple[Group, str]]:
    """Events packed into groups (in order; at most GROUP_EVENTS and GROUP_CHARS of JSON each), with their JSON."""
    packed: list[tuple[Group, str]] = []
    texts: list[str] = []
    members: list[StoredEvent] = []

    def close() -> None:
        ids = "\n".join(e[0] for e in members)
        row = GROUP_PREFIX + hashlib.sha256(ids.encode()).hexdigest()[:32]
        packed.append((Group(row, list(members)), "[" + ",".join(texts) + "]"))
        texts.clear()
        members.clear()

    size = 0
    for event in events:
        text = json.dumps(list(event))
        if members and (len(members) >= GROUP_EVENTS or size + len(text) + 2 > GROUP_CHARS):
            close()
            size = 0
        texts.append(text)
        members.append(event)
        size += len(text) + 1
    if members:
        close()
    return packed


class Outbox:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def add(self, event_id: str, event_type: str, subject: str, data: dict[str, Any], time: str) -> bool:
        """Store an event to send; False when it is stored already (the same event, announced again)."""
        try:
            self.table.create_entity({"PartitionKey": PARTITION, "RowKey": event_id, "type": event_type,
                                      "subject": subject, "data": json.dumps(data), "time": time})
            return True
        except ResourceExistsError:
            return False

    def add_many(self, events: list[StoredEvent], held_until: float = 0.0) -> list[Group]:
        """Store events in group rows, 100 rows per transaction; storing a group again is no error. Returns the
        groups, for `remove` once the topic took their events. `held_until` (epoch seconds): `pending` leaves the
        rows alone until then, or until `release` - their writer sends them, or withdraws one, itself."""
        packed = group_rows(events)
        entities = [{"PartitionKey": PARTITION, "RowKey": group.row, "events": text, "count": len(group.events),
                     "time": min(e[4] for e in group.events), "heldUntil": held_until} for group, text in packed]
        for i in range(0, len(entities), 100):
            submit_transaction(self.table, [("upsert", e) for e in entities[i:i + 100]])
        return [group for group, _ in packed]

    def pending(self, limit: int) -> list[dict[str, Any]]:
        """Events still to send, oldest row first, whole rows until at least `limit` events. Each event:
        RowKey (its id), type, subject, data, time, and `row` (the outbox row holding it)."""
        now = time.time()
        rows = [dict(e) for e in self.table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION})
                if float(e.get("heldUntil") or 0.0) <= now]
        rows.sort(key=lambda r: str(r.get("time")))
        events: list[dict[str, Any]] = []
        for r in rows:
            if len(events) >= limit:
                break
            # a row still marked held after its hold ended: its writer never sent, released or took it back
            orphaned = float(r.get("heldUntil") or 0.0) > 0.0
            if "events" in r:
                events += [{"RowKey": ident, "type": kind, "subject": subject, "data": data, "time": when,
                            "row": r["RowKey"], "orphaned": orphaned}
                           for ident, kind, subject, data, when in json.loads(r["events"])]
            else:
                events.append(dict(r, data=json.loads(r["data"]), row=r["RowKey"]))
        return events

    def rewrite(self, row: str, events: list[StoredEvent], held_until: float) -> None:
        """A group row with only `events` left (one write: the row never stands empty or lost meanwhile)."""
        text = "[" + ",".join(json.dumps(list(e)) for e in events) + "]"
        self.table.upsert_entity({"PartitionKey": PARTITION, "RowKey": row, "events": text, "count": len(events),
                                  "time": min(e[4] for e in events), "heldUntil": held_until}, mode=UpdateMode.REPLACE)

    def release(self, rows: list[str]) -> None:
        """Stop holding rows (their writer could not send them): the next `pending` returns them."""
        for row in dict.fromkeys(rows):
            with contextlib.suppress(ResourceNotFoundError):
                self.table.update_entity({"PartitionKey": PARTITION, "RowKey": row, "heldUntil": 0.0},
                                         mode=UpdateMode.MERGE)

    def remove(self, rows: list[str]) -> None:
        """Forget rows whose events the topic has taken (100 per transaction; one already gone is no error)."""
        rows = list(dict.fromkeys(rows))
        for i in range(0, len(rows), 100):
            chunk = rows[i:i + 100]
            try:
                submit_transaction(self.table, [("delete", {"PartitionKey": PARTITION, "RowKey": r}) for r in chunk])
            except TableTransactionError:
                for row in chunk:
                    with contextlib.suppress(ResourceNotFoundError):
                        self.table.delete_entity(PARTITION, row)
