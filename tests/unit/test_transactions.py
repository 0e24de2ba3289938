"""The `$batch` framing of shared/adapters/transactions.py against azure-core's own: the same bytes for the same
operations (boundaries and dates aside), and answers read as the SDK reads them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import EdmType, TableClient, TableTransactionError, UpdateMode
from azure.data.tables._table_batch import TableBatchOperations

from shared.adapters.transactions import frame, read_answer

pytestmark = pytest.mark.unit

CONN = ("DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5a2V5a2V5a2V5;"
        "TableEndpoint=http://127.0.0.1:9/acct;")
OPERATIONS: list[Any] = [
    ("create", {"PartitionKey": "p", "RowKey": "b", "n": 5, "f": 1.5, "s": "h\u00e9 \"quoted\"", "t": True}),
    ("update", {"PartitionKey": "p", "RowKey": "a", "x": 2},
     {"mode": UpdateMode.REPLACE, "etag": 'W/"datetime\'2026-11-28T16%3A28%3A22.41Z\'"',
      "match_condition": MatchConditions.IfNotModified}),
    ("upsert", {"PartitionKey": "p", "RowKey": "c", "big": (2**40, EdmType.INT64)}, {"mode": UpdateMode.REPLACE}),
    ("upsert", {"PartitionKey": "p", "RowKey": "m", "v": "merge"}, {"mode": UpdateMode.MERGE}),
    ("delete", {"PartitionKey": "p", "RowKey": "d"}),
]


class Captured(Exception):
    pass


def sdk_body(table: TableClient) -> bytes:
    """What azure-core sends for OPERATIONS (stopped before it leaves the process)."""
    got: dict[str, bytes] = {}

    def hook(request):
        got["body"] = request.http_request.body
        raise Captured

    with pytest.raises(Captured):
        table.submit_transaction(OPERATIONS, raw_request_hook=hook)
    return got["body"]


def test_the_body_is_the_one_azure_core_writes():
    table = TableClient.from_connection_string(CONN, "ledger")
    theirs = sdk_body(table)
    text = theirs.decode()
    outer = re.findall(r"^--(batch_[0-9a-f-]+)", text)[0]
    changeset = re.findall(r"boundary=(changeset_[0-9a-f-]+)", text)[0]
    date = re.findall(r"x-ms-date: ([^\r]+)", text)[0]
    batch = TableBatchOperations(config=table._client._config, endpoint=f"{table.scheme}://{table._primary_hostname}",
                                 table_name=table.table_name, is_cosmos_endpoint=table._cosmos_endpoint)
    for op in OPERATIONS:
        batch.add_operation(op)
    ours = frame(batch.requests, outer, changeset, date)
    assert ours == theirs


AZURITE_ANSWER = (
    "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
    "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 201 Created\r\nDataServiceVersion: 3.0;\r\nETag: W/\"datetime'2026-11-28T16%3A28%3A22.4265482Z'\"\r\n"
    "\r\n\r\n"
    "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 204 No Content\r\nETag: W/\"datetime'2026-11-28T16%3A28%3A22.4265497Z'\"\r\n\r\n\r\n"
    "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 204 No Content\r\n\r\n\r\n"
    "--changesetresponse_2--\r\n--batchresponse_1--\r\n")
CONFLICT = (
    "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
    "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 409 Conflict\r\nContent-ID: 2\r\nContent-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n"
    "\r\n{\"odata.error\":{\"code\":\"EntityAlreadyExists\",\"message\":{\"lang\":\"en-US\",\"value\":"
    "\"1:The specified entity already exists.\\nRequestId:x\"}}}\r\n"
    "--changesetresponse_2--\r\n--batchresponse_1--\r\n")


def test_an_answer_gives_each_operations_etag():
    assert read_answer("multipart/mixed; boundary=batchresponse_1", AZURITE_ANSWER.encode()) == [
        {"etag": "W/\"datetime'2026-11-28T16%3A28%3A22.4265482Z'\""},
        {"etag": "W/\"datetime'2026-11-28T16%3A28%3A22.4265497Z'\""}, {}]


def test_a_failed_operation_raises_with_its_index_and_code():
    with pytest.raises(TableTransactionError) as info:
        read_answer('multipart/mixed; boundary="batchresponse_1"', CONFLICT.encode())
    assert info.value.index == 1 and info.value.status_code == 409
    assert info.value.error_code == "EntityAlreadyExists"  # type: ignore[attr-defined]
