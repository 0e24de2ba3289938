"""The events port: typed `Retrain.*` events (`shared.events`) to a topic, never lost (an outbox keeps what the
topic did not take), and a fan-out's events gathered from its threads into a few writes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any

from shared.events import Event


class EventBatch(ABC):
    """A fan-out's events: gathered from its worker threads, stored before the outcomes they announce are
    recorded, sent after."""

    @abstractmethod
    def gathering(self) -> AbstractContextManager[None]:
        """Events the calling thread publishes inside the block join this batch."""

    @abstractmethod
    def store(self, subjects: Collection[str] | None = None) -> Any:
        """Store what was gathered since the last call - only the events about `subjects` when given (a fan-out
        records its endpoints in several batches: each stores and sends just the announcements of the outcomes it
        writes, the others stay gathered); returns a handle for `send`."""

    @abstractmethod
    def send(self, stored: Any) -> None:
        """Send stored events (what the topic does not take waits for `EventSink.flush`)."""

    @abstractmethod
    def withdraw(self, stored: Any, refused: Callable[[str, str, dict[str, Any]], bool]) -> Any:
        """Take back stored events not sent yet that `refused(type, subject, data)` names - the announcement of an
        outcome the ledger then refused (`type` without `Retrain.`, `data` as sent); returns what is left to
        `send`."""


class EventSink(ABC):
    @abstractmethod
    def publish(self, event: Event) -> None:
        """Announce an event (stored first; never fails or slows the operation it reports)."""

    @abstractmethod
    def batch(self) -> EventBatch: ...

    @abstractmethod
    def flush(self, limit: int = 1000) -> int:
        """Send what waits; the number sent."""


