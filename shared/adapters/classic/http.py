"""One connection pool (urllib3) for all Studio (classic) calls, with timeouts and bounded, jittered retries.

Retries (tenacity): 429, 5xx, timeouts and connection errors, with exponential back-off and full jitter, honouring
`Retry-After`; at most `max_attempts` tries. A POST that is not idempotent (submitting a BES job) is never retried
after a read timeout, because the service may have created the job: the caller gets a TransportError instead of
a duplicate job. Secrets never reach exception messages or logs: only the operation name, status and error code.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3 import Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from shared.adapters.classic.errors import StudioApiError, TransportError
from shared.adapters.transport import HttpPool, retry_after_seconds

log = logging.getLogger("shared.adapters.classic.http")


@dataclass(frozen=True)
class HttpPolicy:
    max_attempts: int = 6
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_size: int = 32


@dataclass(frozen=True)
class StudioResponse:
    """An answer from a Studio API: status, headers (case-insensitive) and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.content)


class StudioHttp:
    """JSON over HTTPS to the Studio (classic) hosts. Only hosts in `allowed_hosts` (when given) are called."""

    def __init__(self, policy: HttpPolicy | None = None, allowed_hosts: Callable[[str], bool] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy or HttpPolicy()
        self._allowed = allowed_hosts
        self._sleep = sleep
        self.pool = HttpPool(self.policy.pool_size)

    def close(self) -> None:
        self.pool.clear()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        cap = min(self.policy.max_backoff_seconds, self.policy.backoff_seconds * 2 ** (state.attempt_number - 1))
        delay = random.uniform(0, cap)  # full jitter
        if isinstance(exc, StudioApiError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.policy.max_backoff_seconds))
        return delay

    def request(self, method: str, url: str, operation: str, key: str, json_body: Any = None,
                idempotent: bool = True, expect: tuple[int, ...] = (200,),
                max_attempts: int | None = None, read_timeout: float | None = None) -> StudioResponse:
        """Send with retries; return the response when its status is in `expect`, else raise StudioApiError
        (its `attempts` says how many tries this call made)."""
        host = urlsplit(url).netloc.lower()
        if self._allowed is not None and not self._allowed(host):
            raise ValueError(f"{operation}: host {host!r} is not a configured Studio (classic) host")

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, StudioApiError):
                return exc.transient
            if isinstance(exc, TransportError):
                return idempotent or not exc.maybe_processed
            return False

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: attempt %d failed (%s); retrying", operation, state.attempt_number,
                        getattr(exc, "code", None) or type(exc).__name__)

        retrying = Retrying(stop=stop_after_attempt(max_attempts or self.policy.max_attempts), wait=self._wait,
                            retry=retry_if_exception(retryable), reraise=True, sleep=self._sleep,
                            before_sleep=before_sleep)
        try:
            return retrying(self._once, method, url, operation, key, json_body, expect,
                            read_timeout or self.policy.read_timeout)
        except StudioApiError as exc:
            exc.attempts = int(retrying.statistics.get("attempt_number", 1))
            raise

    def _once(self, method: str, url: str, operation: str, key: str, json_body: Any,
              expect: tuple[int, ...], read_timeout: float) -> StudioResponse:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        try:
            raw = self.pool.for_url(url).request(
                method, url, body=body, headers=headers, redirect=False,
                timeout=Timeout(connect=self.policy.connect_timeout, read=read_timeout))
        except NewConnectionError as exc:  # refused before anything was sent: safe to retry
            raise TransportError(operation, exc, maybe_processed=False) from None
        except (ConnectTimeoutError, SSLError) as exc:
            raise TransportError(operation, exc, maybe_processed=False) from None
        except (ReadTimeoutError, ProtocolError, HTTPError) as exc:  # sent: the service may have acted on it
            raise TransportError(operation, exc, maybe_processed=True) from None
        resp = StudioResponse(raw.status, raw.headers, raw.data)
        if resp.status_code in expect:
            return resp
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        raise StudioApiError.from_response(resp.status_code, answer, retry_after, operation)
