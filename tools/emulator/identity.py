"""A stand-in for the managed identity the Functions platform gives an app, and Entra ID's checks of its tokens.

In Azure the platform sets `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` in the app's environment, and
azure-identity's `ManagedIdentityCredential` (also inside `DefaultAzureCredential` and the blob binding extension)
asks `GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01&client_id=...` with header `X-IDENTITY-HEADER`.
This module answers that request the same way, with a JWT for the requested resource: `aud` the resource,
`iss` `https://sts.windows.net/<tenant>/`, `oid`/`tid` of the identity, `nbf`/`iat`/`exp`. Azurite in
`--oauth basic` mode accepts it (it checks issuer, audience and lifetime, not the signature); the emulator's Event
Grid topics in `entra` mode verify it fully (signature, audience, lifetime).

What the workspace storage saw of the SAS tokens handed to it (their field names and the non-secret fields, never
the signature) is readable at `GET /admin/identity/sas-seen`, so a test can tell a user-delegation SAS (`skoid`,
`sktid`) from an account-key SAS.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from tools.emulator.context import EMULATOR

TOKEN_SECONDS = 3600
API_VERSION = "2019-08-01"


@dataclass
class Identity:
    """One user-assigned managed identity (ids derived from the workspace, so they survive a restart)."""

    seed: str
    tenant_id: str = ""
    principal_id: str = ""
    client_id: str = ""
    header: str = ""
    issued: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        space = uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-identity/{self.seed}")
        self.tenant_id = str(uuid.uuid5(space, "tenant"))
        self.principal_id = str(uuid.uuid5(space, "principal"))
        self.client_id = str(uuid.uuid5(space, "client"))
        self.header = hashlib.sha256(f"header/{self.seed}".encode()).hexdigest()
        self._signing_key = hashlib.sha256(f"signing/{self.seed}".encode()).digest()

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant_id}/"

    def token(self, resource: str) -> tuple[str, int]:
        now = int(time.time())
        expires = now + TOKEN_SECONDS
        claims = {"aud": resource.rstrip("/"), "iss": self.issuer, "iat": now, "nbf": now - 60, "exp": expires,
                  "oid": self.principal_id, "sub": self.principal_id, "tid": self.tenant_id,
                  "appid": self.client_id, "idtyp": "app", "ver": "1.0"}
        self.issued[resource.rstrip("/")] += 1
        return jwt.encode(claims, self._signing_key, algorithm="HS256"), expires

    def verify(self, token: str, audience: str) -> dict[str, Any] | None:
        """The token's claims when this identity issued it for `audience` and it is still valid, else None."""
        try:
            claims: dict[str, Any] = jwt.decode(token, self._signing_key, algorithms=["HS256"],
                                                audience=[audience, audience + "/"], issuer=self.issuer)
        except jwt.PyJWTError:
            return None
        return claims

    def manifest(self, base_url: str) -> dict[str, str]:
        return {"endpoint": f"{base_url}/msi/token", "header": self.header, "client_id": self.client_id,
                "principal_id": self.principal_id, "tenant_id": self.tenant_id}


IDENTITY: web.AppKey[Identity] = web.AppKey("identity", Identity)
routes = web.RouteTableDef()


def _error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


@routes.get("/msi/token", name="identity.token")
async def token(request: web.Request) -> web.Response:
    identity = request.app[IDENTITY]
    if not hmac.compare_digest(request.headers.get("X-IDENTITY-HEADER", "").encode(), identity.header.encode()):
        return _error(401, "invalid_request", "X-IDENTITY-HEADER is missing or wrong")
    if request.query.get("api-version") != API_VERSION:
        return _error(400, "invalid_request", f"api-version must be {API_VERSION}")
    resource = request.query.get("resource", "")
    if not resource.startswith("https://"):
        return _error(400, "invalid_resource", "resource must be an https URI")
    wanted = request.query.get("client_id")
    if wanted and wanted != identity.client_id:
        return _error(400, "invalid_request", f"no identity with client_id {wanted} is assigned to this app")
    access_token, expires = identity.token(resource)
    return web.json_response({"access_token": access_token, "expires_on": str(expires), "resource": resource,
                              "token_type": "Bearer", "client_id": identity.client_id})


@routes.get("/admin/identity/sas-seen", name="admin.identity.sas")
async def sas_seen(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[EMULATOR].fetcher.seen))


@routes.get("/admin/identity/issued", name="admin.identity.issued")
async def issued(request: web.Request) -> web.Response:
    return web.json_response(dict(request.app[IDENTITY].issued))
