"""The work queue on Azure Storage queues (azure-storage-queue): JSON bodies, Base64-encoded as the Functions
host's queue trigger reads them by default; a delay is the message's initial visibility timeout. Shared marks
(a target's throttling) are the queue's metadata: one read serves every instance, cached for a second."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters.transport import pooled_transport, sdk_retries
from shared.errors import ServiceError
from shared.ports.queues import MAX_DELAY_SECONDS, QueuedMessage, WorkQueue
from shared.settings import Settings

MARK_CACHE_SECONDS = 1.0


class QueueError(ServiceError):
    transient = True
    code = "QueueUnavailable"


def _key(key: str) -> str:
    return "mark_" + re.sub(r"[^A-Za-z0-9_]", "_", key)  # metadata names are identifiers


class StorageWorkQueue(WorkQueue):
    def __init__(self, settings: Settings, name: str, credential: Any = None, retries: int = 3) -> None:
        self.name = name
        options: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                                   "message_decode_policy": TextBase64DecodePolicy(),
                                   "transport": pooled_transport(), **sdk_retries(retries)}
        if settings.storage_connection_string is not None:
            self.client = QueueClient.from_connection_string(settings.storage_connection_string.get_secret_value(),
                                                             name, **options)
        else:
            url = settings.storage_queue_uri or f"https://{settings.storage_account_name}.queue.core.windows.net"
            self.client = QueueClient(url, name, credential=credential, **options)
        self._marks: tuple[float, dict[str, str]] = (0.0, {})
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Create the queue when missing (locally; in Azure the template creates it)."""
        with contextlib.suppress(ResourceExistsError):
            self.client.create_queue()

    def send(self, body: dict[str, Any], delay_seconds: float = 0) -> None:
        delay = int(min(max(0.0, delay_seconds), MAX_DELAY_SECONDS) + 0.999)
        try:
            self.client.send_message(json.dumps(body, separators=(",", ":")), visibility_timeout=delay or None,
                                     time_to_live=-1)
        except AzureError as exc:
            raise QueueError(f"the work queue {self.name} did not take a message: {type(exc).__name__}") from None

    def receive(self, max_messages: int, visibility_seconds: float) -> list[QueuedMessage]:
        try:
            got = self.client.receive_messages(messages_per_page=max_messages, max_messages=max_messages,
                                               visibility_timeout=max(1, int(visibility_seconds)))
            return [QueuedMessage(json.loads(m.content), int(m.dequeue_count or 1), m) for m in got]
        except ResourceNotFoundError:
            return []  # not made yet (a poison queue appears with its first message): nothing waits
        except AzureError as exc:
            raise QueueError(f"the work queue {self.name} could not be read: {type(exc).__name__}") from None

    def delete(self, message: QueuedMessage) -> None:
        try:
            self.client.delete_message(message.handle)
        except AzureError as exc:
            raise QueueError(f"a message of {self.name} could not be deleted: {type(exc).__name__}") from None

    def pause(self, key: str, until: float) -> None:
        try:
            marks = dict(self.client.get_queue_properties().metadata or {})
            if float(marks.get(_key(key), 0)) >= until:
                return
            marks[_key(key)] = f"{until:.3f}"
            self.client.set_queue_metadata({k: v for k, v in marks.items() if float(v) > time.time()})
        except AzureError as exc:
            raise QueueError(f"the queue {self.name}'s marks could not be written: {type(exc).__name__}") from None
        with self._lock:
            self._marks = (0.0, {})

    def paused_until(self, key: str) -> float:
        with self._lock:
            read_at, marks = self._marks
        if time.monotonic() - read_at > MARK_CACHE_SECONDS:
            try:
                marks = dict(self.client.get_queue_properties().metadata or {})
            except AzureError:
                return 0.0  # unknown: go on at the configured pace (a 429 pauses again)
            with self._lock:
                self._marks = (time.monotonic(), marks)
        return float(marks.get(_key(key), 0) or 0)

    def depth(self) -> int:
        try:
            return int(self.client.get_queue_properties().approximate_message_count or 0)
        except AzureError as exc:
            raise QueueError(f"the queue {self.name} could not be read: {type(exc).__name__}") from None
