"""shared/adapters/transactions.py against a loopback server giving the table service's own `$batch` answers: each
operation's etag (none for a delete), a failed operation's index, status and code, a too-large transaction, and no
request for no operations. (Conditions and all-or-nothing on a real table: tests/integration/library.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.data.tables import RequestTooLargeError, TableClient, TableTransactionError, UpdateMode

from shared.adapters.transactions import submit_transaction

pytestmark = pytest.mark.unit

ANSWER = (
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
MULTIPART = "multipart/mixed; boundary=batchresponse_1"
OPERATIONS: list[Any] = [
    ("create", {"PartitionKey": "p", "RowKey": "a", "n": 1}),
    ("upsert", {"PartitionKey": "p", "RowKey": "b", "s": "h\u00e9"}, {"mode": UpdateMode.REPLACE}),
    ("delete", {"PartitionKey": "p", "RowKey": "c"}),
]


class TableService(ThreadingHTTPServer):
    """Answers every request with `answer` (status, content type, body) and keeps the paths asked for."""

    answer: tuple[int, str, str] = (202, MULTIPART, ANSWER)
    paths: list[str]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TableService

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)
        status, content_type, body = self.server.answer
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service() -> Iterator[TableService]:
    server = TableService(("127.0.0.1", 0), Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def table(service: TableService) -> TableClient:
    port = service.server_address[1]
    conn = ("DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5a2V5a2V5a2V5;"
            f"TableEndpoint=http://127.0.0.1:{port}/acct;")
    return TableClient.from_connection_string(conn, "ledger", retry_total=0)


def test_each_operation_gives_its_etag_and_a_delete_none(service: TableService, table: TableClient) -> None:
    results = submit_transaction(table, iter(OPERATIONS))
    assert results == [{"etag": "W/\"datetime'2026-11-28T16%3A28%3A22.4265482Z'\""},
                       {"etag": "W/\"datetime'2026-11-28T16%3A28%3A22.4265497Z'\""}, {}]
    assert service.paths == ["/acct/$batch"]


def test_a_failed_operation_raises_with_its_index_status_and_code(service: TableService,
                                                                 table: TableClient) -> None:
    service.answer = (202, MULTIPART, CONFLICT)
    with pytest.raises(TableTransactionError) as info:
        submit_transaction(table, OPERATIONS)
    assert info.value.index == 1 and info.value.status_code == 409
    assert info.value.error_code == "EntityAlreadyExists"  # type: ignore[attr-defined]


def test_a_transaction_too_large_is_a_transaction_error(service: TableService, table: TableClient) -> None:
    service.answer = (413, "application/json", "")
    with pytest.raises(RequestTooLargeError) as info:
        submit_transaction(table, OPERATIONS)
    assert isinstance(info.value, TableTransactionError) and info.value.status_code == 413


def test_no_operations_is_no_request(service: TableService, table: TableClient) -> None:
    assert submit_transaction(table, []) == []
    assert submit_transaction(table, iter([])) == []
    assert service.paths == []
