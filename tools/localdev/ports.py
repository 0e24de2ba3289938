"""Free loopback ports, and waiting for a TCP port to accept connections."""

from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it; callers retry if it is taken in between)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (servers set SO_REUSEADDR, so TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float = 30.0, alive: object = None) -> None:
    """Block until host:port accepts a TCP connection; raise TimeoutError after `timeout` seconds.

    `alive`, when given, is a zero-argument callable returning False once the server process has died,
    so a crashed child fails fast instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if callable(alive) and not alive():
                raise RuntimeError(f"the process meant to listen on {host}:{port} exited") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)
