"""Who is calling, and may they act as an operator. The caller is the principal App Service Authentication (Easy
Auth, Entra ID) vouches for - the `X-MS-CLIENT-PRINCIPAL` header the platform sets and strips from client
requests, read only when the platform says authentication is on (`WEBSITE_AUTH_ENABLED`) - never a header the client
chose. Operator actions (approve, reject, patch or force a model, roll back, add an endpoint) need more than an
uploader's function key when RETRAIN_OPERATOR_AUTH is `entra`: a principal with the operator app role."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass

import azure.functions as func

from shared.settings import Settings

KEY_HOLDER = "function-key"  # the caller recorded when no principal vouches: someone holding a function key


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


def principal(req: func.HttpRequest) -> Principal | None:
    """The authenticated principal, when App Service Authentication is on and vouches for one."""
    if os.environ.get("WEBSITE_AUTH_ENABLED", "").strip().lower() != "true":
        return None
    raw = req.headers.get("x-ms-client-principal")
    if not raw:
        return None
    try:
        data = json.loads(base64.b64decode(raw))
    except (ValueError, binascii.Error):
        return None
    claims = [c for c in data.get("claims") or [] if isinstance(c, dict)]
    name_type, role_type = data.get("name_typ") or "name", data.get("role_typ") or "roles"
    values = {str(c.get("typ")): str(c.get("val")) for c in claims}
    name = values.get(name_type) or values.get("preferred_username") or values.get("name") or \
        values.get("http://schemas.microsoft.com/identity/claims/objectidentifier") or "unknown"
    roles = frozenset(str(c.get("val")) for c in claims if c.get("typ") in (role_type, "roles"))
    return Principal(name, roles)


class NotAnOperator(PermissionError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def caller(req: func.HttpRequest) -> str:
    """Who is asking, for the record: the authenticated principal's name, else the key holder."""
    found = principal(req)
    return found.name if found is not None else KEY_HOLDER


def operator(req: func.HttpRequest, settings: Settings) -> str:
    """The caller of an operator action, or NotAnOperator: with RETRAIN_OPERATOR_AUTH=entra the caller must be a
    principal holding RETRAIN_OPERATOR_ROLE; with `key` (local runs, no Entra app) a function key is enough."""
    found = principal(req)
    if settings.operator_auth == "key":
        return found.name if found is not None else KEY_HOLDER
    if found is None:
        raise NotAnOperator("an operator action needs a signed-in operator (App Service Authentication with "
                            "Entra ID), not only a function key", 401)
    if settings.operator_role not in found.roles:
        raise NotAnOperator(f"{found.name} lacks the app role {settings.operator_role!r} that operator actions "
                            "need", 403)
    return found.name
