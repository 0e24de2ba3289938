"""An in-memory work queue: messages become visible after their delay (on the fake's own clock when a test moves
it), and `drain` runs a handler over them as the host's queue trigger does (poison after `max_dequeue`)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.ports.queues import MAX_DELAY_SECONDS, QueuedMessage, WorkQueue


@dataclass
class _Stored:
    id: int
    text: str
    visible_at: float
    dequeue_count: int = 0


@dataclass
class FakeQueue(WorkQueue):
    name: str = "fake-work"
    offset: float = 0.0  # added to the clock: a test moves time on instead of sleeping
    messages: dict[int, _Stored] = field(default_factory=dict)
    poison: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    sent: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self.offset

    def send(self, body: dict[str, Any], delay_seconds: float = 0) -> None:
        text = json.dumps(body)  # what is sent is what a real queue would carry: JSON
        with self._lock:
            i = next(self._ids)
            delay = min(max(0.0, delay_seconds), MAX_DELAY_SECONDS)
            self.messages[i] = _Stored(i, text, self.now() + delay)
            self.sent += 1

    def receive(self, max_messages: int, visibility_seconds: float) -> list[QueuedMessage]:
        with self._lock:
            now = self.now()
            ready = sorted((m for m in self.messages.values() if m.visible_at <= now), key=lambda m: m.visible_at)
            taken = []
            for m in ready[:max_messages]:
                m.dequeue_count += 1
                m.visible_at = now + visibility_seconds
                taken.append(QueuedMessage(json.loads(m.text), m.dequeue_count, m.id))
            return taken

    def delete(self, message: QueuedMessage) -> None:
        with self._lock:
            self.messages.pop(int(message.handle), None)

    def pause(self, key: str, until: float) -> None:
        with self._lock:
            self.marks[key] = max(until, self.marks.get(key, 0.0))

    def paused_until(self, key: str) -> float:
        return self.marks.get(key, 0.0)

    def depth(self) -> int:
        return len(self.messages)

    def next_due(self) -> float | None:
        """Seconds until the next message is visible (None: the queue is empty)."""
        with self._lock:
            if not self.messages:
                return None
            return max(0.0, min(m.visible_at for m in self.messages.values()) - self.now())

    def drain(self, handle: Callable[[dict[str, Any], int], None], max_dequeue: int = 5,
              visibility: float = 10.0, limit: int = 10_000) -> int:
        """Run `handle` over every message, moving the clock on to each one's time (no sleeping); a message that
        raised is retried after `visibility`, and poisoned after `max_dequeue` tries. Returns how many ran."""
        ran = 0
        while ran < limit:
            due = self.next_due()
            if due is None:
                return ran
            self.offset += due
            for msg in self.receive(16, visibility):
                ran += 1
                try:
                    handle(msg.body, msg.dequeue_count)
                except Exception:
                    if msg.dequeue_count >= max_dequeue:
                        self.poison.append(msg.body)
                        self.delete(msg)
                    continue
                self.delete(msg)
        raise AssertionError(f"the queue did not drain in {limit} messages")
