"""Entity-group transactions through shared/adapters/transactions.py, against Azurite: the etag of each operation,
conditions honoured, all or nothing, the failing operation's index."""

from __future__ import annotations

import uuid

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from shared.adapters.transactions import submit_transaction


@pytest.fixture
def table(storage_connection_string):
    service = TableServiceClient.from_connection_string(storage_connection_string)
    client = service.create_table(f"tx{uuid.uuid4().hex[:10]}")
    yield client
    service.delete_table(client.table_name)


def test_each_operation_applies_and_its_etag_is_the_rows(table):
    first = table.create_entity({"PartitionKey": "p", "RowKey": "a", "n": 1})
    table.create_entity({"PartitionKey": "p", "RowKey": "gone"})
    results = submit_transaction(table, [
        ("create", {"PartitionKey": "p", "RowKey": "b", "s": "h\u00e9", "f": 2.5}),
        ("update", {"PartitionKey": "p", "RowKey": "a", "n": 2},
         {"mode": UpdateMode.REPLACE, "etag": first["etag"], "match_condition": MatchConditions.IfNotModified}),
        ("upsert", {"PartitionKey": "p", "RowKey": "c", "t": True}, {"mode": UpdateMode.REPLACE}),
        ("delete", {"PartitionKey": "p", "RowKey": "gone"}),
    ])
    assert len(results) == 4 and results[3] == {}
    for result, key in zip(results[:3], "bac", strict=True):
        assert result["etag"] == table.get_entity("p", key).metadata["etag"]
    assert table.get_entity("p", "a")["n"] == 2 and table.get_entity("p", "b")["s"] == "h\u00e9"
    assert sorted(e["RowKey"] for e in table.list_entities()) == ["a", "b", "c"]


def test_a_failing_operation_fails_the_whole_transaction_with_its_index(table):
    stale = table.create_entity({"PartitionKey": "p", "RowKey": "a", "n": 1})["etag"]
    table.upsert_entity({"PartitionKey": "p", "RowKey": "a", "n": 5})
    with pytest.raises(TableTransactionError) as info:
        submit_transaction(table, [
            ("create", {"PartitionKey": "p", "RowKey": "new"}),
            ("update", {"PartitionKey": "p", "RowKey": "a", "n": 9},
             {"mode": UpdateMode.REPLACE, "etag": stale, "match_condition": MatchConditions.IfNotModified}),
        ])
    assert info.value.index == 1 and info.value.status_code == 412
    assert [e["RowKey"] for e in table.list_entities()] == ["a"] and table.get_entity("p", "a")["n"] == 5
    with pytest.raises(TableTransactionError) as again:
        submit_transaction(table, [("create", {"PartitionKey": "p", "RowKey": "a"})])
    assert again.value.error_code == "EntityAlreadyExists"  # type: ignore[attr-defined]


def test_a_missing_row_fails_a_delete_transaction_and_keeps_the_others(table):
    """What the outbox relies on: one row already gone fails the group (it then deletes row by row)."""
    table.create_entity({"PartitionKey": "p", "RowKey": "a"})
    table.create_entity({"PartitionKey": "p", "RowKey": "c"})
    with pytest.raises(TableTransactionError) as info:
        submit_transaction(table, [("delete", {"PartitionKey": "p", "RowKey": key}) for key in "abc"])
    assert info.value.index == 1 and info.value.status_code == 404
    assert sorted(e["RowKey"] for e in table.list_entities()) == ["a", "c"]


def test_no_operations_is_no_request(table):
    assert submit_transaction(table, []) == []
