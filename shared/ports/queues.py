"""The work queue port: messages that carry work to whichever instance takes them - a fan-out's batches, and the
re-check of an endpoint awaiting proof, made visible only when it is due (a scheduled look, not a sleeping thread).
Delivery is at least once: a handler must be safe to run twice. The queue also holds a few shared marks
(`pause`/`paused_until`): one instance's 429 slows every instance down."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

WORK_QUEUE = "retrain-work"  # the fan-out's queue: its trigger's binding names it (infra creates it)
MAX_DELAY_SECONDS = 7 * 24 * 3600  # the longest a storage queue keeps a message invisible


@dataclass
class QueuedMessage:
    """A message taken from the queue: its body, how often it was taken, and the adapter's handle to delete it."""

    body: dict[str, Any]
    dequeue_count: int
    handle: Any = None


class WorkQueue(ABC):
    """One queue of JSON messages. Errors: `shared.errors.ServiceError` (transient)."""

    name: str = "work"

    def now(self) -> float:
        """The epoch time messages are due by (a fake moves its own)."""
        return time.time()

    @abstractmethod
    def send(self, body: dict[str, Any], delay_seconds: float = 0) -> None:
        """Put a message on the queue, visible after `delay_seconds` (at most MAX_DELAY_SECONDS)."""

    @abstractmethod
    def receive(self, max_messages: int, visibility_seconds: float) -> list[QueuedMessage]:
        """Take up to `max_messages` visible messages, hidden for `visibility_seconds` (the host's job in Azure:
        the app only sends; tools and tests receive)."""

    @abstractmethod
    def delete(self, message: QueuedMessage) -> None:
        """Remove a message taken by `receive` (done with)."""

    @abstractmethod
    def pause(self, key: str, until: float) -> None:
        """Mark `key` (a target's throttling) paused until the epoch time `until`, for every instance."""

    @abstractmethod
    def paused_until(self, key: str) -> float:
        """The epoch time `key` is paused until (0 when it is not)."""

    @abstractmethod
    def depth(self) -> int:
        """About how many messages wait (visible or not)."""
