"""Fault injection: for routes matching a pattern, answer with a status (and Retry-After), add latency, or drop
the connection - for the next N calls or at a rate. Driven by `--fault` flags and the `/admin/faults` API.

Route names are the emulator's own (`management.patch_endpoint`, `bes.submit`, `rrs.execute`,
`eventgrid.publish`, `azureml.put_deployment`, `azureml.score`, ...); patterns use shell wildcards (`management.*`).
Admin routes are never faulted. The Azure ML stand-in's routes (`azureml.*`) answer a status fault in ARM's error
envelope.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from tools.emulator.errors import StudioError

STATUS_CODES = {400: ("BadArgument", "InjectedFault"), 408: ("RequestTimeout", "RequestCanceled"),
                429: ("TooManyRequests", "RequestThrottled"),
                500: ("InternalError", "InjectedFault"), 502: ("InternalError", "InjectedFault"),
                503: ("ServiceUnavailable", "RequestThrottled"), 504: ("GatewayTimeout", "BackendScoreTimeout")}


class FaultRule(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    route: str = "*"
    method: str | None = None
    status: int | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    drop: bool = False
    count: int | None = None  # None: every matching call (subject to rate)
    skip: int = 0  # let this many matching calls through first
    rate: float = 1.0
    hits: int = 0

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: int | None) -> int | None:
        if value is not None and value not in STATUS_CODES:
            raise ValueError(f"status must be one of {sorted(STATUS_CODES)}")
        return value

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        return value

    def matches(self, route: str, method: str) -> bool:
        return fnmatch.fnmatchcase(route, self.route) and (self.method is None or self.method.upper() == method)


def parse_fault_flag(text: str) -> FaultRule:
    """`route=bes.submit,status=503,retry_after=1,count=3` -> FaultRule."""
    fields: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"'{part}' is not key=value")
        key = key.strip()
        fields[key] = value.strip().lower() in ("1", "true", "yes") if key == "drop" else value.strip()
    return FaultRule.model_validate(fields)


class Faults:
    def __init__(self, rules: list[FaultRule] | None = None, seed: int | None = None) -> None:
        self.rules: list[FaultRule] = list(rules or [])
        self._random = random.Random(seed)

    def take(self, route: str, method: str) -> FaultRule | None:
        """The rule that fires for this call, if any (consuming one of its `count`)."""
        for rule in self.rules:
            if not rule.matches(route, method):
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            if rule.rate < 1.0 and self._random.random() >= rule.rate:
                continue
            rule.hits += 1
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
            return rule
        return None


FAULTS: web.AppKey[Faults] = web.AppKey("faults", Faults)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    name = request.match_info.route.name or ""
    if not name or name.startswith("admin."):
        return await handler(request)
    rule = request.app[FAULTS].take(name, request.method)
    if rule is None:
        return await handler(request)
    if rule.latency_ms:
        await asyncio.sleep(rule.latency_ms / 1000.0)
    if rule.drop:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # the connection is gone: nothing is answered
    if rule.status is None:
        return await handler(request)
    code, detail = STATUS_CODES[rule.status]
    headers = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after is not None else {}
    if name.startswith("azureml."):  # the Azure ML stand-in's routes answer in ARM's error envelope
        return web.json_response({"error": {"code": code, "message": f"Injected fault (rule {rule.id}).",
                                            "details": [], "additionalInfo": []}},
                                 status=rule.status, headers={"x-ms-request-id": str(uuid.uuid4()), **headers})
    return StudioError(code, detail, f"Injected fault (rule {rule.id}).", status=rule.status,
                       headers=headers).response()


Rule = TypeVar("Rule", bound=BaseModel)


def rule_list_routes(routes: web.RouteTableDef, path: str, name: str, model: type[Rule],
                     rules_of: Callable[[web.Application], list[Rule]]) -> None:
    """The admin API of a list of rules kept in the app - this module's fault rules, the Azure ML stand-in's
    deployment faults: on `path`, GET lists them (route `<name>.list`); POST (`<name>.add`) takes one rule or a list,
    validates each as `model` and appends them: 201 with what was added, or 400 BadArgument and nothing added;
    DELETE (`<name>.clear`) forgets them all: 204."""

    async def list_rules(request: web.Request) -> web.Response:
        return web.json_response([r.model_dump() for r in rules_of(request.app)])

    async def add_rules(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            added = [model.model_validate(item) for item in (body if isinstance(body, list) else [body])]
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": {"code": "BadArgument", "message": str(exc)}}, status=400)
        rules_of(request.app).extend(added)
        return web.json_response([r.model_dump() for r in added], status=201)

    async def clear_rules(request: web.Request) -> web.Response:
        rules_of(request.app).clear()
        return web.Response(status=204)

    routes.get(path, name=f"{name}.list")(list_rules)
    routes.post(path, name=f"{name}.add")(add_rules)
    routes.delete(path, name=f"{name}.clear")(clear_rules)


admin_routes = web.RouteTableDef()
rule_list_routes(admin_routes, "/admin/faults", "admin.faults", FaultRule, lambda app: app[FAULTS].rules)


@admin_routes.delete("/admin/faults/{id}", name="admin.faults.delete")
async def delete_fault(request: web.Request) -> web.Response:
    faults = request.app[FAULTS]
    before = len(faults.rules)
    faults.rules = [r for r in faults.rules if r.id != request.match_info["id"]]
    return web.Response(status=204 if len(faults.rules) < before else 404)
