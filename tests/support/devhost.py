"""devhost run in-process for its own tests: hosts started on one event loop in a thread (stopped whatever happens),
and a bounded wait for what they do."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tools.devhost.host import DevHost


@contextlib.contextmanager
def serving(hosts: list[DevHost]) -> Iterator[None]:
    """Start `hosts` on one event loop in a daemon thread; stop them, then the loop, on the way out."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        for host in hosts:
            loop.run_until_complete(host.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield
    finally:
        for host in hosts:
            asyncio.run_coroutine_threadsafe(host.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def wait_for(check: Callable[[], Any], timeout: float) -> Any:
    """`check()`'s first truthy answer, polled every 50 ms; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result
