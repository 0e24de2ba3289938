"""Azure Resource Manager conventions: the error envelope, Entra bearer tokens, api-version, request ids, and a
decorator that applies them to every management route.

Envelope (common-types v3 ErrorResponse): `{"error": {"code", "message", "target"?, "details": [...],
"additionalInfo": [...]}}`. ARM's own refusals use its documented codes: AuthenticationFailed (no Authorization
header), InvalidAuthenticationToken / ExpiredAuthenticationToken / InvalidAuthenticationTokenAudience (a bad token),
MissingApiVersionParameter and NoRegisteredProviderFound (api-version), ResourceNotFound, LocationRequired.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web

from tools.azureml.config import API_VERSION, MANAGEMENT_AUDIENCE, PROVIDER
from tools.emulator.context import bearer_token
from tools.emulator.identity import IDENTITY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None,
                 details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.target = status, code, message, target
        self.details = details or []
        self.headers = headers or {}

    def error(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "details": self.details,
                                "additionalInfo": []}
        if self.target:
            body["target"] = self.target
        return body

    def response(self) -> web.Response:
        return json_response({"error": self.error()}, self.status, self.headers)


def bad_argument(message: str, target: str | None = None) -> ArmError:
    """Azure ML's code for a request it refuses as invalid (how-to-troubleshoot-online-endpoints: BadArgument)."""
    return ArmError(400, "BadArgument", message, target)


def conflict(message: str) -> ArmError:
    return ArmError(409, "Conflict", message)


def not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"The Resource '{PROVIDER}/{resource_type}/{name}' under resource "
                                             f"group '{resource_group}' was not found.")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    base = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-correlation-request-id": str(uuid.uuid4())}
    return web.Response(status=status, text=json.dumps(data), content_type="application/json",
                        headers={**base, **(headers or {})})


def empty_response(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers={"x-ms-request-id": str(uuid.uuid4()), **(headers or {})})


_WWW = 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="{}"'


def authenticate(request: web.Request) -> dict[str, Any]:
    """The caller's claims, or the 401 ARM answers (a missing header, a token it cannot accept, wrong audience)."""
    if "Authorization" not in request.headers:
        raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                       headers={"WWW-Authenticate": _WWW.format("The authentication failed because of missing "
                                                                "'Authorization' header.")})
    token = bearer_token(request)
    invalid = ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.",
                       headers={"WWW-Authenticate": _WWW.format("The access token is invalid.")})
    if token is None:
        raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is not a "
                                                    "Bearer token.",
                       headers={"WWW-Authenticate": _WWW.format("The authentication failed.")})
    claims = request.app[IDENTITY].verify(token, MANAGEMENT_AUDIENCE)
    if claims is not None:
        return claims
    try:
        unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid from None
    aud = unverified.get("aud")
    if isinstance(aud, str) and aud.rstrip("/") != MANAGEMENT_AUDIENCE:
        raise ArmError(401, "InvalidAuthenticationTokenAudience",
                       f"The access token has been obtained for wrong audience or resource '{aud}'. It should "
                       f"exactly match with one of the allowed audiences 'https://management.core.windows.net/',"
                       f"'https://management.azure.com/'.",
                       headers={"WWW-Authenticate": _WWW.format("The access token has wrong audience.")})
    exp = unverified.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        stamp = datetime.fromtimestamp(exp, UTC).strftime("%m/%d/%Y %H:%M:%S")
        raise ArmError(401, "ExpiredAuthenticationToken",
                       f"The access token expiry UTC time '{stamp}' is earlier than current UTC time "
                       f"'{datetime.now(UTC).strftime('%m/%d/%Y %H:%M:%S')}'.",
                       headers={"WWW-Authenticate": _WWW.format("The access token expired.")})
    raise invalid


def check_api_version(request: web.Request, resource_type: str) -> None:
    version = request.query.get("api-version")
    if not version:
        raise ArmError(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")
    if version != API_VERSION:
        raise ArmError(400, "NoRegisteredProviderFound",
                       f"No registered resource provider found for location 'local' and API version '{version}' "
                       f"for type '{resource_type}'. The supported api-versions are '{API_VERSION}'.")


def management(resource_type: str) -> Callable[[Handler], Handler]:
    """Wrap a management handler: authentication, api-version, and ArmError -> the ARM envelope."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                claims = authenticate(request)
                check_api_version(request, resource_type)
                request["claims"] = claims
                return await handler(request)
            except ArmError as exc:
                return exc.response()

        return wrapped

    return wrap


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArmError(400, "InvalidRequestContent", f"The request content was invalid and could not be "
                                                     f"deserialized: {exc}.") from None
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def expect_keys(body: dict[str, Any], allowed: set[str], where: str) -> None:
    """The spec's update bodies are `additionalProperties: false`: say which property is not accepted."""
    extra = sorted(set(body) - allowed)
    if extra:
        raise bad_argument(f"{where} does not accept {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}.",
                           target=extra[0])


def system_data(claims: dict[str, Any], created: dict[str, Any] | None = None) -> dict[str, Any]:
    who = str(claims.get("appid") or claims.get("oid") or "unknown")
    kind = "Application" if claims.get("idtyp") == "app" else "User"
    stamp = now_iso()
    base = created or {"createdAt": stamp, "createdBy": who, "createdByType": kind}
    return {**base, "lastModifiedAt": stamp, "lastModifiedBy": who, "lastModifiedByType": kind}
