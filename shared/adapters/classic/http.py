"""One pooled HTTP session for all Studio (classic) calls, with timeouts and bounded, jittered retries.

Retries (tenacity): 429, 5xx, timeouts and connection errors, with exponential back-off and full jitter, honouring
`Retry-After`; at most `max_attempts` tries. A POST that is not idempotent (submitting a BES job) is never retried
after a read timeout, because the service may have created the job: the caller gets a TransportError instead of
a duplicate job. Secrets never reach exception messages or logs: only the operation name, status and error code.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from shared.adapters.classic.errors import StudioApiError, TransportError
from shared.adapters.transport import pooled_session, retry_after_seconds

log = logging.getLogger("shared.adapters.classic.http")


@dataclass(frozen=True)
class HttpPolicy:
    max_attempts: int = 6
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_size: int = 32


class StudioHttp:
    """JSON over HTTPS to the Studio (classic) hosts. Only hosts in `allowed_hosts` (when given) are called."""

    def __init__(self, policy: HttpPolicy | None = None, allowed_hosts: Callable[[str], bool] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy or HttpPolicy()
        self._allowed = allowed_hosts
        self._sleep = sleep
        self.session = pooled_session(self.policy.pool_size)

    def close(self) -> None:
        self.session.close()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        cap = min(self.policy.max_backoff_seconds, self.policy.backoff_seconds * 2 ** (state.attempt_number - 1))
        delay = random.uniform(0, cap)  # full jitter
        if isinstance(exc, StudioApiError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.policy.max_backoff_seconds))
        return delay

    def request(self, method: str, url: str, operation: str, key: str, json_body: Any = None,
                idempotent: bool = True, expect: tuple[int, ...] = (200,),
                max_attempts: int | None = None, read_timeout: float | None = None) -> requests.Response:
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
              expect: tuple[int, ...], read_timeout: float) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        try:
            resp = self.session.request(method, url, json=json_body, headers=headers,
                                        timeout=(self.policy.connect_timeout, read_timeout))
        except requests.exceptions.ConnectTimeout as exc:
            raise TransportError(operation, exc, maybe_processed=False) from None
        except requests.exceptions.ConnectionError as exc:
            # Refused before sending is safe to retry; a reset after sending may have been processed.
            refused = "refused" in str(exc).lower() or "NewConnectionError" in repr(exc)
            raise TransportError(operation, exc, maybe_processed=not refused) from None
        except requests.exceptions.Timeout as exc:
            raise TransportError(operation, exc, maybe_processed=True) from None
        if resp.status_code in expect:
            return resp
        try:
            body = resp.json()
        except ValueError:
            body = None
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        raise StudioApiError.from_response(resp.status_code, body, retry_after, operation)
