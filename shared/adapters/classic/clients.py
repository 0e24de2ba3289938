"""The Studio (classic) clients of each configured target, over one pooled session that calls only configured
hosts; the web service's default endpoint name (never patched) asked once per target."""

from __future__ import annotations

import threading

from shared.adapters.classic.bes import BesClient
from shared.adapters.classic.errors import StudioApiError
from shared.adapters.classic.http import HttpPolicy, StudioHttp
from shared.adapters.classic.management import ManagementClient
from shared.adapters.classic.models import Endpoint
from shared.adapters.classic.scoring import ScoringClient
from shared.logs import register_secret
from shared.settings import Settings, Target


def background_policy(settings: Settings) -> HttpPolicy:
    """Triggers and the timer: the full retry budget (past it, the platform retries or reconcile does)."""
    return HttpPolicy(max_attempts=settings.http_max_attempts, backoff_seconds=settings.http_backoff_seconds,
                      max_backoff_seconds=settings.http_max_backoff_seconds,
                      connect_timeout=settings.connect_timeout_seconds, read_timeout=settings.read_timeout_seconds,
                      pool_size=max(32, settings.patch_concurrency * 2))


def interactive_policy(settings: Settings) -> HttpPolicy:
    """An operator's HTTP call: a short budget, so it answers (503 + Retry-After) well within the front end's
    230 s instead of sleeping through a throttling storm."""
    return HttpPolicy(max_attempts=min(2, settings.http_max_attempts), backoff_seconds=settings.http_backoff_seconds,
                      max_backoff_seconds=min(5.0, settings.http_max_backoff_seconds),
                      connect_timeout=settings.connect_timeout_seconds,
                      read_timeout=min(30.0, settings.read_timeout_seconds), pool_size=32)


class StudioClients:
    def __init__(self, settings: Settings, policy: HttpPolicy | None = None) -> None:
        self.settings = settings
        self.http = StudioHttp(policy or background_policy(settings), allowed_hosts=settings.host_allowed)
        self._lock = threading.Lock()
        self._default_endpoints: dict[str, str] = {}

    def management(self, target: Target) -> ManagementClient:
        assert target.management_url, "a classic target names its management API"
        return ManagementClient(self.http, target.management_url,
                                self.settings.management_key_for(target).get_secret_value())

    def bes(self, target: Target) -> BesClient:
        url, key = self.settings.bes_for(target)
        return BesClient(self.http, url, key.get_secret_value())

    def scoring(self, api_location: str, key: str) -> ScoringClient:
        register_secret(key)
        return ScoringClient(self.http, api_location, key)

    def default_endpoint(self, target: Target) -> str:
        """The web service's default endpoint name (never patched), asked once per target."""
        with self._lock:
            found = self._default_endpoints.get(target.name)
        if found is None:
            found = self.management(target).get_service().DefaultEndpointName or "default"
            with self._lock:
                self._default_endpoints[target.name] = found
        return found

    def resolve(self, target: Target, endpoints: list[str]) -> list[str]:
        """`["*"]` is every non-default endpoint of the service; other lists are as they are."""
        if endpoints != ["*"]:
            return endpoints
        default = self.default_endpoint(target)
        return [name for name in self.management(target).endpoint_names() if name != default]

    def endpoint(self, target: Target, name: str) -> Endpoint | None:
        """The endpoint as the service shows it, or None when it does not exist."""
        try:
            return self.management(target).get_endpoint(name)
        except StudioApiError as exc:
            if exc.status == 404:
                return None
            raise

    def close(self) -> None:
        self.http.close()
