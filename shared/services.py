"""The wiring of the library: settings, storage, ledger, events and Studio (classic) clients, built once."""

from __future__ import annotations

import functools
import threading
from datetime import timedelta

from shared.classic.bes import BesClient
from shared.classic.http import HttpPolicy, StudioHttp
from shared.classic.management import ManagementClient
from shared.classic.scoring import ScoringClient
from shared.events import EventPublisher
from shared.ledger import Ledger
from shared.logs import register_secret
from shared.sas import SasMinter
from shared.settings import Settings, Target, get_settings
from shared.storage import Storage


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        for secret in [settings.bes_key, settings.management_key, settings.eventgrid_key,
                       settings.storage_connection_string] + [t.management_key for t in settings.targets] + \
                [t.bes_key for t in settings.targets]:
            if secret is not None:
                register_secret(secret.get_secret_value())
        self.storage = Storage(settings)
        if self.storage.account_key:
            register_secret(self.storage.account_key)
        self.ledger = Ledger(settings, credential=self.storage.credential)
        self.events = EventPublisher(settings)
        self.minter = self.storage.minter()
        self.http = StudioHttp(HttpPolicy(
            max_attempts=settings.http_max_attempts, backoff_seconds=settings.http_backoff_seconds,
            max_backoff_seconds=settings.http_max_backoff_seconds, connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.read_timeout_seconds, pool_size=max(32, settings.patch_concurrency * 2)),
            allowed_hosts=self._host_allowed)
        self._lock = threading.Lock()
        self._default_endpoints: dict[str, str] = {}

    def _host_allowed(self, host: str) -> bool:
        return host in self.settings.allowed_hosts or host.endswith(".services.azureml.net")

    def ensure_storage(self) -> None:
        self.storage.ensure_containers()
        self.ledger.ensure_tables()

    @property
    def sas_lifetime(self) -> timedelta:
        return timedelta(minutes=self.settings.sas_minutes)

    def management(self, target: Target) -> ManagementClient:
        return ManagementClient(self.http, target.management_url, target.management_key.get_secret_value())

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

    def close(self) -> None:
        self.http.close()


@functools.lru_cache(maxsize=1)
def get_services() -> Services:
    return Services(get_settings())


__all__ = ["SasMinter", "Services", "get_services"]
