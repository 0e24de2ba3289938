"""`EventSink` in memory: what was published, in order; a batch gathers its threads' events and publishes them when
sent (until then they are held: a flush leaves them, as the outbox's hold). `down` makes the topic refuse: events
wait, as in the outbox, until `flush`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any

from shared.events import Event
from shared.ports.events import EventBatch, EventSink


class FakeBatch(EventBatch):
    def __init__(self, sink: FakeEvents) -> None:
        self.sink = sink
        self._gathered: list[Event] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _gather(self) -> Iterator[None]:
        previous = getattr(self.sink.local, "batch", None)
        self.sink.local.batch = self
        try:
            yield
        finally:
            self.sink.local.batch = previous

    def gathering(self) -> contextlib.AbstractContextManager[None]:
        return self._gather()

    def add(self, event: Event) -> None:
        with self._lock:
            self._gathered.append(event)

    def store(self, subjects: Collection[str] | None = None) -> list[Event]:
        with self._lock:
            if subjects is None:
                taken, self._gathered = self._gathered, []
            else:
                taken = [e for e in self._gathered if e.subject in subjects]
                self._gathered = [e for e in self._gathered if e.subject not in subjects]
        with self.sink.lock:
            self.sink.held.extend(taken)
        return taken

    def send(self, stored: Any) -> None:
        with self.sink.lock:
            for event in stored:
                if event in self.sink.held:
                    self.sink.held.remove(event)
                    self.sink.waiting.append(event)
        self.sink.flush()

    def withdraw(self, stored: Any, refused: Callable[[str, str, dict[str, Any]], bool]) -> list[Event]:
        taken = [e for e in stored if refused(e.type_name(), e.subject, e.data())]
        with self.sink.lock:
            for event in taken:
                if event in self.sink.held:
                    self.sink.held.remove(event)
        return [e for e in stored if e not in taken]


class FakeEvents(EventSink):
    def __init__(self) -> None:
        self.published: list[Event] = []  # what the topic took, in order
        self.waiting: list[Event] = []  # stored, not sent yet
        self.held: list[Event] = []  # a batch's, stored and not released by its `send` yet: `flush` leaves them
        self.down = False
        self.local = threading.local()
        self.lock = threading.Lock()

    def publish(self, event: Event) -> None:
        batch = getattr(self.local, "batch", None)
        if batch is not None:
            batch.add(event)
            return
        with self.lock:
            if event in self.waiting:
                return  # announced again while it waits: stored once (its id is its content)
            self.waiting.append(event)
        self.flush()

    def batch(self) -> FakeBatch:
        return FakeBatch(self)

    def flush(self, limit: int = 1000) -> int:
        with self.lock:
            if self.down:
                return 0
            sent, self.waiting = self.waiting[:limit], self.waiting[limit:]
            self.published.extend(sent)
            return len(sent)

    def of(self, kind: type[Event], run_id: str | None = None) -> list[Any]:
        """Published events of one type (for one run)."""
        return [e for e in self.published if isinstance(e, kind) and (run_id is None or e.run_id == run_id)]

    def types(self, run_id: str | None = None) -> list[str]:
        return [e.type_name() for e in self.published if run_id is None or e.run_id == run_id]
