"""A tiny webhook receiver for tests: answers Event Grid's validation handshake and records notifications."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.validations = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                kind = self.headers.get("aeg-event-type")
                if kind == "SubscriptionValidation":
                    receiver.validations += 1
                    self._reply(200, {"validationResponse": body[0]["data"]["validationCode"]})
                    return
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self._reply(503, {})
                    return
                receiver.headers.append(dict(self.headers))
                receiver.notifications.extend(body)
                self._reply(200, {})

            def _reply(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [n for n in self.notifications if predicate(n)]
            if found:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"no matching notification; got {[n.get('subject') for n in self.notifications]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
