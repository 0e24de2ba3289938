"""The emulator's shared context: configuration, state store, storage access; and request helpers."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from tools.emulator.blobs import BlobStore, SasFetcher, StorageAccount
from tools.emulator.errors import StudioError, bad_argument, not_found, unauthorized
from tools.emulator.state import EndpointState, ServiceState, Store

API_VERSION = "2.0"


@dataclass
class Config:
    storage_connection_string: str
    propagation_seconds: float = 0.0
    job_seconds: float = 0.0
    result_sas_seconds: float = 3600.0
    max_concurrent_jobs: int = 2
    max_endpoints: int = 10_000


@dataclass
class Emulator:
    config: Config
    store: Store
    blobs: BlobStore = field(default_factory=BlobStore)
    fetcher: SasFetcher = field(default_factory=SasFetcher)
    base_url: str = ""  # http://host:port, set once the server listens

    @property
    def workspace_storage(self) -> StorageAccount:
        return StorageAccount.parse(self.config.storage_connection_string)

    @property
    def result_sas_lifetime(self) -> timedelta:
        return timedelta(seconds=self.config.result_sas_seconds)

    def api_location(self, ep: EndpointState) -> str:
        return f"{self.base_url}/workspaces/{self.store.ws.id}/services/{ep.guid}"

    def help_location(self, svc: ServiceState, ep: EndpointState) -> str:
        return f"{self.base_url}/apihelp/workspaces/{self.store.ws.id}/webservices/{svc.id}/endpoints/{ep.guid}"


EMULATOR: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)


def emulator(request: web.Request) -> Emulator:
    return request.app[EMULATOR]


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def same_secret(given: str | None, *expected: str) -> bool:
    if not given:
        return False
    return any(hmac.compare_digest(given.encode(), e.encode()) for e in expected if e)


def endpoint_key_ok(request: web.Request, ep: EndpointState) -> bool:
    return same_secret(bearer_token(request), ep.primary_key, ep.secondary_key)


def check_api_version(request: web.Request) -> None:
    version = request.query.get("api-version")
    if version != API_VERSION:
        raise bad_argument("BadVersionCall", f"api-version '{version}' is not supported; use api-version=2.0.")


async def json_body(request: web.Request, allow_empty: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return None
        raise bad_argument("RequestBodyInvalid", "The request body is empty; a JSON body is required.")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_argument("RequestBodyInvalid", f"The request body is not valid JSON: {exc}") from None


def lookup_endpoint_by_guid(request: web.Request) -> tuple[ServiceState, EndpointState]:
    """Resolve {ws}/services/{guid} of an execution URL and check the endpoint key."""
    emu = emulator(request)
    if request.match_info["ws"] != emu.store.ws.id:
        raise not_found("WorkspaceNotFound", f"Workspace {request.match_info['ws']} was not found.")
    found = emu.store.endpoint_by_guid(request.match_info["guid"])
    if found is None:
        raise not_found("WebServiceNotFound", f"No web service endpoint {request.match_info['guid']}.")
    if not endpoint_key_ok(request, found[1]):
        raise unauthorized("ScoreRequestUnauthorized")
    return found


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def raise_body_invalid(message: str) -> StudioError:
    return bad_argument("RequestBodyInvalid", message)
