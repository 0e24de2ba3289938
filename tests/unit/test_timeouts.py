"""Every wait is bounded (issue 21): a service that accepts connections but never answers fails a call within the
transport's read timeout - which must ride on the transport the app hands the SDKs (their own timeout settings
apply only to a transport they build)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from shared.adapters.transport import pooled_transport


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback server that accepts connections, reads, and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_service_that_never_answers_fails_the_call_within_the_transports_read_timeout(silent_server):
    client = BlobServiceClient(f"{silent_server}/devstoreaccount1", credential=None, retry_total=0,
                               transport=pooled_transport(1, connection_timeout=1, read_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(AzureError):
        client.get_container_client("c").get_container_properties()
    assert time.monotonic() - started < 3
