"""Entity-group transactions (the table service's `$batch`), framed here rather than by azure-core.

The SDK still builds every operation's request (entity serialisation with OData types, keys, If-Match conditions)
and sends the batch through the table client's own pipeline (authentication, retries, logging, tracing); only the
multipart/mixed framing of the body and the reading of the answer are done here. azure-core does those with the
`email` package and a thread pool per transaction: about 0.5 ms of CPU per operation measured here (10-20x this
module, see bench/ledger_transactions.py) - the largest share of a 10,000-endpoint fan-out's client time, which
is CPU-bound. The body is the one azure-core writes, boundaries and dates aside (a unit test compares them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any

from azure.core.rest import HttpRequest
from azure.data.tables import TableClient, TableTransactionError
from azure.data.tables._error import RequestTooLargeError, _decode_error
from azure.data.tables._table_batch import TableBatchOperations

CRLF = "\r\n"


def submit_transaction(table: TableClient, operations: Iterable[Any]) -> list[dict[str, str]]:
    """`table.submit_transaction(operations)`, the same operations, results (an `etag` per operation) and errors
    (TableTransactionError with the failing operation's index; RequestTooLargeError)."""
    batch = TableBatchOperations(config=table._client._config, endpoint=f"{table.scheme}://{table._primary_hostname}",
                                 table_name=table.table_name, is_cosmos_endpoint=table._cosmos_endpoint)
    for operation in operations:
        batch.add_operation(operation)
    if not batch.requests:
        return []
    outer = f"batch_{uuid.uuid4()}"
    request = HttpRequest("POST", f"{table.scheme}://{table._primary_hostname}/$batch", headers={
        "x-ms-version": table.api_version, "DataServiceVersion": "3.0", "MaxDataServiceVersion": "3.0;NetFx",
        "Content-Type": f"multipart/mixed; boundary={outer}", "Accept": "application/json"},
        content=frame(batch.requests, outer, f"changeset_{uuid.uuid4()}", formatdate(usegmt=True)))
    response = table._client.send_request(request, stream=True)  # (not decoded: multipart is read below)
    payload = response.read()
    if response.status_code == 413:
        raise _decode_error(response, error_message="The transaction request was too large",  # type: ignore[no-untyped-call]
                            error_type=RequestTooLargeError)
    if response.status_code != 202:
        raise _decode_error(response)  # type: ignore[no-untyped-call]
    return read_answer(response.headers.get("Content-Type", ""), payload)


def frame(requests: list[HttpRequest], outer: str, changeset: str, date: str) -> bytes:
    """The `$batch` body: one changeset holding each request as an application/http part."""
    out = [f"--{outer}{CRLF}Content-Type: multipart/mixed; boundary={changeset}{CRLF}{CRLF}"]
    for index, req in enumerate(requests):
        body = req.content.encode() if isinstance(req.content, str) else (req.content or b"")
        headers = {k: v for k, v in req.headers.items() if k.lower() != "content-length"}
        if body:
            headers = {"Content-Type": headers.pop("Content-Type", "application/json"),
                       "Content-Length": str(len(body)), **headers}
        headers["x-ms-date"] = headers["Date"] = date
        out.append(f"--{changeset}{CRLF}Content-Type: application/http{CRLF}Content-Transfer-Encoding: binary{CRLF}"
                   f"Content-ID: {index}{CRLF}{CRLF}{req.method} {req.url} HTTP/1.1{CRLF}"
                   + "".join(f"{k}: {v}{CRLF}" for k, v in headers.items()) + CRLF)
        out.append(body.decode() + CRLF)
    out.append(f"--{changeset}--{CRLF}{CRLF}--{outer}--{CRLF}")
    return "".join(out).encode()


def _boundary(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"')
    raise ValueError(f"no multipart boundary in {content_type!r}")


def _parts(body: str, boundary: str) -> list[str]:
    """The parts between `--boundary` lines (the preamble and the closing delimiter dropped)."""
    sections = body.split(f"--{boundary}")
    return [s.removeprefix(CRLF).removeprefix("\n") for s in sections[1:] if not s.startswith("--")]


def _head(text: str) -> tuple[list[str], str]:
    """Header lines and the body after the first blank line."""
    for sep in (CRLF + CRLF, "\n\n"):
        if sep in text:
            head, _, rest = text.partition(sep)
            return head.splitlines(), rest
    return text.splitlines(), ""


def read_answer(content_type: str, payload: bytes) -> list[dict[str, str]]:
    """Each operation's metadata (its `etag`) from a `$batch` answer; TableTransactionError for a failed one."""
    results: list[dict[str, str]] = []
    for part in _parts(payload.decode("utf-8", "replace"), _boundary(content_type)):
        head, rest = _head(part)
        inner = next((line.split(":", 1)[1].strip() for line in head if line.lower().startswith("content-type:")), "")
        if inner.lower().startswith("multipart/mixed"):
            results += read_answer(inner, rest.encode())
            continue
        status_and_headers, body = _head(rest)
        status = int(status_and_headers[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in status_and_headers[1:])}
        if not 200 <= status < 300:
            raise _transaction_error(status, headers, body)
        results.append({"etag": headers["etag"]} if "etag" in headers else {})
    return results


def _transaction_error(status: int, headers: dict[str, str], body: str) -> TableTransactionError:
    code, message = headers.get("x-ms-error-code"), body.strip()
    try:
        error = json.loads(body)["odata.error"]
        code, message = error.get("code") or code, error["message"]["value"]
    except (ValueError, KeyError, TypeError):
        pass
    kind = RequestTooLargeError if status == 413 else TableTransactionError
    exc = kind(message=f"{message}\nErrorCode:{code}" if code else message)
    exc.status_code = status
    exc.error_code = code  # type: ignore[attr-defined]  # (the SDK's own errors carry it the same way)
    return exc
