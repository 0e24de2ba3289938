"""The ledger's watches (a part of the table ledger adapter): one row per watched deployment in the runs table's
`watch` partition, so reconcile reads only the watches, never the runs or deployments behind them."""

from __future__ import annotations

import contextlib

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.table_rows import from_entity, to_entity
from shared.records import Watch

PARTITION = "watch"


class WatchRows:
    """A mixin of the table ledger: watches in its runs table."""

    runs: TableClient

    def add_watch(self, watch: Watch) -> None:
        self.runs.upsert_entity(to_entity(watch, PARTITION, f"{watch.target}~{watch.id}"), mode=UpdateMode.REPLACE)

    def watches(self) -> list[Watch]:
        found = [from_entity(Watch, e) for e in self.runs.query_entities("PartitionKey eq @p",
                                                                        parameters={"p": PARTITION})]
        return sorted(found, key=lambda w: w.created_at)

    def end_watch(self, watch: Watch) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.runs.delete_entity(PARTITION, f"{watch.target}~{watch.id}")
