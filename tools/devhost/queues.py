"""Queue triggers as the Functions host's storage extension runs them (host.json `extensions.queues`):

- the queue named by the binding (`%SETTING%` resolved) on the binding's `connection` (a connection string, or
  identity-based `<connection>__queueServiceUri` / `__accountName`), messages Base64-decoded (`messageEncoding`);
- up to `batchSize` (16) messages taken at once, hidden while they run; a new batch once `newBatchThreshold`
  (batchSize / 2) or fewer are in flight; an empty queue polled with a back-off from 100 ms up to
  `maxPollingInterval` (1 min);
- success deletes the message; a failure makes it visible again after `visibilityTimeout` (0), and after
  `maxDequeueCount` (5) tries it is moved to `<queue>-poison`.

Several devhost processes on one storage account compete for the same messages, as instances do in Azure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import azure.functions.queue as func_queue
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueMessage

from tools.devhost.indexing import FunctionSpec

log = logging.getLogger("devhost.queues")
HIDDEN_WHILE_RUNNING = 600  # seconds a taken message stays hidden (the host renews it; our invocations are short)
MIN_POLL_SECONDS = 0.1


def _seconds(text: object, default: float) -> float:
    if text is None:
        return default
    h, m, s = (float(p) for p in str(text).split(":"))
    return h * 3600 + m * 60 + s


class QueueOptions:
    """host.json's `extensions.queues`, with the extension's defaults."""

    def __init__(self, host_json: dict[str, Any]) -> None:
        q = host_json.get("extensions", {}).get("queues", {})
        self.batch_size = int(q.get("batchSize", 16))
        self.new_batch_threshold = int(q.get("newBatchThreshold", self.batch_size // 2))
        self.max_polling = _seconds(q.get("maxPollingInterval"), 60.0)
        self.visibility = _seconds(q.get("visibilityTimeout"), 0.0)
        self.max_dequeue = int(q.get("maxDequeueCount", 5))
        self.base64 = str(q.get("messageEncoding", "base64")).lower() == "base64"


def queue_client(environ: dict[str, str], connection: str, name: str) -> QueueClient:
    if environ.get(connection):
        return QueueClient.from_connection_string(environ[connection], name)
    from azure.identity import ManagedIdentityCredential

    uri = environ.get(f"{connection}__queueServiceUri") or \
        f"https://{environ[f'{connection}__accountName']}.queue.core.windows.net"
    credential = ManagedIdentityCredential(client_id=environ.get(f"{connection}__clientId"))
    return QueueClient(uri, name, credential=credential)


class QueueListener:
    """One queue-triggered function: takes messages and runs `invoke(spec, reason, make_argument)` in threads."""

    def __init__(self, spec: FunctionSpec, environ: dict[str, str], options: QueueOptions,
                 invoke: Callable[[FunctionSpec, str, Any, tuple[int, int]], Any]) -> None:
        assert spec.queue_name is not None
        self.spec, self.opts, self.invoke = spec, options, invoke
        connection = str(spec.trigger.get("connection") or "AzureWebJobsStorage")
        self.client = queue_client(environ, connection, spec.queue_name)
        self.poison = queue_client(environ, connection, f"{spec.queue_name}-poison")
        self.in_flight = 0
        self.processed = {"succeeded": 0, "failed": 0, "poisoned": 0}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ResourceExistsError):
            await loop.run_in_executor(None, self.client.create_queue)
        delay, done = MIN_POLL_SECONDS, asyncio.Event()
        while True:
            if self.in_flight > self.opts.new_batch_threshold:
                done.clear()
                await done.wait()
                continue
            try:
                got = await loop.run_in_executor(None, self._receive)
            except Exception as exc:  # noqa: BLE001 - storage unavailable: poll again later
                log.warning("%s: the queue %s could not be read: %s", self.spec.name, self.spec.queue_name, exc)
                got = []
            if not got:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.opts.max_polling)
                continue
            delay = MIN_POLL_SECONDS
            for message in got:
                self.in_flight += 1
                task = loop.run_in_executor(None, self._one, message)
                task.add_done_callback(lambda _t: self._finished(done))

    def _finished(self, done: asyncio.Event) -> None:
        self.in_flight -= 1
        done.set()

    def _receive(self) -> list[QueueMessage]:
        return list(self.client.receive_messages(messages_per_page=self.opts.batch_size,
                                                 max_messages=self.opts.batch_size,
                                                 visibility_timeout=HIDDEN_WHILE_RUNNING))

    def _body(self, message: QueueMessage) -> bytes:
        text = str(message.content)
        if self.opts.base64:
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("the message is not Base64 (messageEncoding is base64)") from None
        return text.encode()

    def _one(self, message: QueueMessage) -> None:
        """Run the function on one message (in a worker thread), then delete it, retry it later, or poison it."""
        count = int(message.dequeue_count or 1)
        try:
            body = self._body(message)
            argument = func_queue.QueueMessage(  # type: ignore[no-untyped-call]
                id=message.id, body=body, dequeue_count=count, expiration_time=message.expires_on,
                insertion_time=message.inserted_on, time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt)
            self.invoke(self.spec, f"New queue message detected on '{self.spec.queue_name}'.", lambda: argument,
                        (count - 1, self.opts.max_dequeue - 1))
        except Exception:  # noqa: BLE001 - logged by the invocation; the message decides what comes next
            self.processed["failed"] += 1
            try:
                if count >= self.opts.max_dequeue:
                    self._to_poison(message)
                else:
                    self.client.update_message(message, pop_receipt=message.pop_receipt,
                                               visibility_timeout=int(self.opts.visibility))
            except Exception as exc:  # noqa: BLE001 - it comes back when its hiding runs out
                log.warning("%s: message %s could not be released: %s", self.spec.name, message.id, exc)
            return
        self.processed["succeeded"] += 1
        with contextlib.suppress(Exception):  # taken over meanwhile: it is someone else's to delete
            self.client.delete_message(message.id, message.pop_receipt)

    def _to_poison(self, message: QueueMessage) -> None:
        log.error("%s: message %s failed %d times; moved to the poison queue %s-poison", self.spec.name, message.id,
                  self.opts.max_dequeue, self.spec.queue_name)
        with contextlib.suppress(ResourceExistsError):
            self.poison.create_queue()
        self.poison.send_message(str(message.content))
        self.client.delete_message(message.id, message.pop_receipt)
        self.processed["poisoned"] += 1
