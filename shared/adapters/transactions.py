"""Entity-group transactions (the table service's `$batch`): the one place the adapters submit them, through the
SDK's public `TableClient.submit_transaction`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.data.tables import TableClient


def submit_transaction(table: TableClient, operations: Iterable[Any]) -> list[dict[str, str]]:
    """Apply `operations` (the SDK's `(kind, entity[, options])` tuples, one partition) all or none.

    Returns one dict per operation, in order: `{"etag": ...}` for a create, update or upsert, `{}` for a delete.
    Raises what the SDK raises: TableTransactionError when an operation fails (nothing applied; `index` is the
    failing operation's, with its `status_code` and `error_code`), RequestTooLargeError (a TableTransactionError)
    above the service's size limit. No operations: no request, `[]`.
    """
    ops = list(operations)
    if not ops:
        return []
    return [{"etag": str(meta["etag"])} if "etag" in meta else {} for meta in table.submit_transaction(ops)]
