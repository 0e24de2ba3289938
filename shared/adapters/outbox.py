"""The event outbox (a ledger table): every `Retrain.*` event is stored before it is sent and removed once the
topic took it, so a topic outage delays events instead of dropping them. Rows are keyed by the event's id, which
is derived from its content: the same event announced twice (a redelivery, a retry after a crash) is stored
once."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError

PARTITION = "pending"


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

    def add_many(self, rows: list[tuple[str, str, str, Any, str]]) -> None:
        """Store events (id, type, subject, data, time), 100 per transaction; storing one again is no error."""
        entities = [{"PartitionKey": PARTITION, "RowKey": ident, "type": event_type, "subject": subject,
                     "data": json.dumps(data), "time": time} for ident, event_type, subject, data, time in rows]
        for i in range(0, len(entities), 100):
            self.table.submit_transaction([("upsert", e) for e in entities[i:i + 100]])

    def pending(self, limit: int) -> list[dict[str, Any]]:
        """Events still to send, oldest first (at most `limit`)."""
        rows = [dict(e) for e in self.table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION})]
        rows.sort(key=lambda r: str(r.get("time")))
        return [dict(r, data=json.loads(r["data"])) for r in rows[:limit]]

    def remove(self, event_ids: list[str]) -> None:
        """Forget events the topic has taken (100 per transaction; one already gone is no error)."""
        for i in range(0, len(event_ids), 100):
            chunk = event_ids[i:i + 100]
            try:
                self.table.submit_transaction([("delete", {"PartitionKey": PARTITION, "RowKey": e}) for e in chunk])
            except TableTransactionError:
                for event_id in chunk:
                    with contextlib.suppress(ResourceNotFoundError):
                        self.table.delete_entity(PARTITION, event_id)
