"""How the ledger's records sit in table rows: keys (characters a key may not hold replaced), records as entities
and back (with their etags), and whether a `current` row's lease is someone else's."""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar

from shared.records import Current, Record

R = TypeVar("R", bound=Record)
_KEY_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f]")
_KEY_PART_UNSAFE = re.compile(r"[~/\\#?\x00-\x1f\x7f]")  # '~' separates the parts of a RowKey


def target_key(target: str) -> str:
    return _KEY_UNSAFE.sub("_", target)


def _part(value: str) -> str:
    return _KEY_PART_UNSAFE.sub("_", value)


def current_key(endpoint: str) -> str:
    return f"current~{_part(endpoint)}"


def attempt_key(endpoint: str, dep_id: str) -> str:
    return f"dep~{_part(endpoint)}~{_part(dep_id)}"


def to_entity(record: Record, partition: str, row: str) -> dict[str, Any]:
    """A record as a table entity (dict and list fields become JSON text through their serialisers)."""
    return {"PartitionKey": partition, "RowKey": row, **record.model_dump(mode="json", exclude_none=True)}


def from_entity(cls: type[R], entity: Any) -> R:
    record = cls.model_validate(dict(entity))
    record.etag = entity.metadata.get("etag") if hasattr(entity, "metadata") else None
    return record


def leased_by_other(cur: Current | None, owner: str) -> bool:
    return cur is not None and cur.lease_owner not in (None, owner) and cur.lease_until > time.time()
