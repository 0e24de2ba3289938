"""The pace of calls to a target's service, across instances: a ceiling (RETRAIN_TARGET_CALLS_PER_SECOND for the
whole app, each instance taking its share of RETRAIN_MAX_INSTANCES), and a shared pause - a 429 (with its
Retry-After) seen by one instance is a mark on the work queue that every instance reads before it calls again."""

from __future__ import annotations

import threading
import time

from shared.ports.queues import WorkQueue
from shared.settings import Settings

DEFAULT_PAUSE_SECONDS = 10.0  # a 429 that did not say how long
MAX_PAUSE_SECONDS = 300.0


def throttle_key(target: str) -> str:
    return f"throttle-{target}"


class Pace:
    def __init__(self, settings: Settings, queue: WorkQueue) -> None:
        self.queue = queue
        self.rate = settings.target_calls_per_second / settings.max_instances  # this instance's share
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, target: str, calls: int) -> None:
        """Wait until `calls` more calls to `target` fit this instance's share of the ceiling."""
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(target, now))
            self._next[target] = start + calls / self.rate
        if start > now:
            time.sleep(start - now)

    def paused(self, target: str) -> float:
        """Seconds every instance still holds off `target` (0 when it is not throttled)."""
        return max(0.0, self.queue.paused_until(throttle_key(target)) - self.queue.now())

    def throttled(self, target: str, retry_after: float | None) -> None:
        """`target` answered 429: every instance holds off for its Retry-After."""
        seconds = min(MAX_PAUSE_SECONDS, retry_after if retry_after else DEFAULT_PAUSE_SECONDS)
        self.queue.pause(throttle_key(target), self.queue.now() + seconds)
