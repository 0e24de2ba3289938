"""Pooled HTTP for the app: a urllib3 pool for the Studio calls (`HttpPool`), a requests session under the Azure
SDK clients (`pooled_transport`), both trusting the same CAs and proxies; and the reading of a Retry-After header
(urllib3's parser: seconds or an HTTP date)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies_environment

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH, should_bypass_proxies
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry


def ca_bundle() -> str | None:
    """A CA bundle to trust instead of certifi's (`REQUESTS_CA_BUNDLE`: a corporate proxy's CA, or the local
    identity-mode stack's test CA), else None."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or None


class _TrustingAdapter(HTTPAdapter):
    """HTTPS with a CA bundle of our choosing. Mounted for https:// only: a `verify` path on the session would
    cost a stat() per request on plain-http calls too (requests checks whether the path is a folder)."""

    def __init__(self, ca: str, **kwargs: Any) -> None:
        self._ca = ca
        super().__init__(**kwargs)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("verify", True) is True:
            kwargs["verify"] = self._ca
        return super().send(request, *args, **kwargs)


def pooled_session(pool_size: int = 64) -> requests.Session:
    """A requests session with a connection pool of `pool_size`, no retries of its own (callers retry with
    tenacity or the SDK pipeline), and no per-call proxy/netrc lookups unless a proxy is configured."""
    session = requests.Session()
    session.trust_env = bool(os.environ.get("HTTPS_PROXY") or os.environ.get("HTTP_PROXY"))
    pool: dict[str, Any] = {"pool_connections": 8, "pool_maxsize": pool_size, "max_retries": 0}
    ca = ca_bundle()
    session.mount("http://", HTTPAdapter(**pool))
    session.mount("https://", _TrustingAdapter(ca, **pool) if ca else HTTPAdapter(**pool))
    return session


class HttpPool:
    """urllib3 connection pools for JSON calls to a few hosts (the Studio APIs: thousands of calls a second in a
    fan-out). urllib3 itself, not requests over it: measured here, 225 vs 440 us of CPU per call, and a fan-out's
    client is CPU-bound. The CAs are requests' (certifi, or REQUESTS_CA_BUNDLE); HTTPS_PROXY/HTTP_PROXY are
    honoured, NO_PROXY too. No retries or redirects of its own: callers retry (tenacity)."""

    def __init__(self, pool_size: int) -> None:
        ca = ca_bundle() or DEFAULT_CA_BUNDLE_PATH
        self._options: dict[str, Any] = {"num_pools": 8, "maxsize": pool_size, "block": False, "retries": False,
                                         "ca_cert_dir" if os.path.isdir(ca) else "ca_certs": ca}
        self.direct = urllib3.PoolManager(**self._options)
        self._proxies = {scheme: url for scheme, url in getproxies_environment().items()
                         if scheme in ("http", "https")}
        self._via: dict[str, urllib3.ProxyManager] = {}

    def for_url(self, url: str) -> urllib3.PoolManager:
        proxy = self._proxies.get(urlsplit(url).scheme)
        if not proxy or should_bypass_proxies(url, no_proxy=None):
            return self.direct
        if proxy not in self._via:
            self._via[proxy] = urllib3.ProxyManager(proxy, **self._options)
        return self._via[proxy]

    def clear(self) -> None:
        self.direct.clear()
        for manager in self._via.values():
            manager.clear()


def pooled_transport(pool_size: int = 64, connection_timeout: float = 5, read_timeout: float = 60) -> Any:
    """An azure-core transport over a pooled session (a measurable saving at hundreds of calls a second), with its
    timeouts: a client's own `connection_timeout`/`read_timeout` settings apply only to a transport the SDK builds
    itself, so a transport handed to it must carry them (else a service that accepts connections but does not
    answer holds a call for the default 300 s)."""
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(session=pooled_session(pool_size), session_owner=False,
                             connection_timeout=connection_timeout, read_timeout=read_timeout)


def sdk_retries(total: int) -> dict[str, Any]:
    """The Azure SDK clients' retry policy: `total` retries, back-off capped at 8 s, a 5 s connect timeout - so an
    unreachable storage account is an error within seconds, not after the SDK's default ten tries."""
    return {"retry_total": total, "retry_backoff_factor": 0.4, "retry_backoff_max": 8, "connection_timeout": 5}


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header, or None when absent or unreadable. Fractions ("0.2", which the
    emulator's faults send) are read too; urllib3 reads whole seconds and HTTP dates."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return float(Retry().parse_retry_after(value))
    except InvalidHeader:
        return None
