"""Index a v2-model FunctionApp the way the Functions host does: through `app.get_functions()` and the binding
metadata the worker reports, refusing what the host or the Python worker would refuse (so an app that indexes
here does not show "0 functions loaded" in Azure for the same reasons).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

SUPPORTED_TRIGGERS = ("httpTrigger", "blobTrigger", "timerTrigger", "eventGridTrigger", "queueTrigger")
_SETTING_REF = re.compile(r"%([^%]+)%")


class IndexingError(Exception):
    """The app would not load: the message says which function and why."""


@dataclass
class FunctionSpec:
    name: str
    trigger_type: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Callable[..., Any]
    parameters: dict[str, Any]  # name -> resolved annotation (inspect.Parameter.empty when none)
    route: str | None = None
    methods: list[str] = field(default_factory=list)
    auth_level: str | None = None
    blob_container: str | None = None
    blob_pattern: str | None = None
    blob_source: str | None = None
    schedule: str | None = None
    run_on_startup: bool = False
    queue_name: str | None = None

    @property
    def trigger_parameter(self) -> str:
        return str(self.trigger["name"])


def resolve_setting_refs(text: str, environ: Mapping[str, str], where: str) -> str:
    """Replace `%NAME%` with the app setting's value, as the host does for binding expressions."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise IndexingError(f"{where}: '%{name}%' does not resolve to a value (add the app setting {name})")
        return environ[name]

    return _SETTING_REF.sub(sub, text)


def _connection_configured(name: str, environ: Mapping[str, str]) -> bool:
    return any(key in environ for key in (name, f"{name}__accountName", f"{name}__blobServiceUri",
                                          f"{name}__serviceUri"))


def _annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    target = inspect.unwrap(fn)
    try:
        hints = typing.get_type_hints(target)
    except Exception as exc:  # noqa: BLE001 - report any failure to resolve as an indexing error
        raise IndexingError(f"{fn.__name__}: its type annotations cannot be resolved: {exc}") from None
    return {name: hints.get(name, inspect.Parameter.empty)
            for name in inspect.signature(target).parameters}


def index(app: func.FunctionApp, environ: Mapping[str, str] | None = None) -> list[FunctionSpec]:
    """Every function of the app, checked. Raises IndexingError naming the first problem found."""
    env = dict(os.environ if environ is None else environ)
    try:
        functions = app.get_functions()
    except ValueError as exc:  # e.g. two functions with one name
        raise IndexingError(str(exc)) from None
    if not functions:
        raise IndexingError("the app has no functions (0 functions loaded)")
    specs = [_spec(fn, app, env) for fn in functions]
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        for method in spec.methods:
            key = (_route_shape(spec.route or ""), method)
            if key in seen:
                raise IndexingError(f"{spec.name}: route '{spec.route}' [{method}] is already taken by {seen[key]}")
            seen[key] = spec.name
    return specs


def _route_shape(route: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", route.strip("/").lower())


def _spec(fn: Any, app: func.FunctionApp, env: Mapping[str, str]) -> FunctionSpec:
    name = fn.get_function_name()
    bindings = [dict(b) for b in json.loads(fn.get_function_json())["bindings"]]  # what the host reads
    triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
    if len(triggers) != 1:
        raise IndexingError(f"{name}: a function needs exactly one trigger, it has {len(triggers)}")
    trigger = triggers[0]
    if trigger["type"] not in SUPPORTED_TRIGGERS:
        raise IndexingError(f"{name}: devhost runs {', '.join(SUPPORTED_TRIGGERS)} functions, not "
                            f"{trigger['type']} (use Core Tools: func start)")
    user_function = fn.get_user_function()
    params = _annotations(user_function)
    bound = {b["name"] for b in bindings if b["name"] != "$return"}
    missing = [p for p in params if p not in bound and p != "context"]
    if missing:
        raise IndexingError(f"{name}: the following parameters are declared in Python but not in the bindings: "
                            f"{', '.join(missing)}")
    unbound = [b for b in bound if b not in params]
    if unbound:
        raise IndexingError(f"{name}: bindings without a parameter: {', '.join(sorted(unbound))}")
    spec = FunctionSpec(name=name, trigger_type=trigger["type"], trigger=trigger, bindings=bindings,
                        user_function=user_function, parameters=params)
    if spec.trigger_type == "httpTrigger":
        spec.route = (trigger.get("route") or name).strip("/")
        spec.methods = [m.upper() for m in (trigger.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH",
                                                                        "HEAD", "OPTIONS"])]
        level = trigger.get("authLevel") or getattr(app, "auth_level", None)
        spec.auth_level = str(getattr(level, "name", level) or "FUNCTION").upper()
        if spec.auth_level not in ("ANONYMOUS", "FUNCTION", "ADMIN"):
            raise IndexingError(f"{name}: unknown authLevel {spec.auth_level}")
    elif spec.trigger_type == "blobTrigger":
        connection = trigger.get("connection")
        if not connection:
            raise IndexingError(f"{name}: a blob trigger needs a connection setting")
        if not _connection_configured(connection, env):
            raise IndexingError(f"{name}: storage account connection '{connection}' does not exist; make sure it "
                                "is a defined app setting")
        path = resolve_setting_refs(str(trigger.get("path") or ""), env, name)
        container, sep, pattern = path.partition("/")
        if not sep or not container:
            raise IndexingError(f"{name}: blob path '{path}' must be '<container>/<pattern>'")
        spec.blob_container, spec.blob_pattern = container, pattern
        spec.blob_source = str(trigger.get("source") or "LogsAndContainerScan")
    elif spec.trigger_type == "queueTrigger":
        connection = str(trigger.get("connection") or "AzureWebJobsStorage")
        if not _connection_configured(connection, env):
            raise IndexingError(f"{name}: storage account connection '{connection}' does not exist; make sure it "
                                "is a defined app setting")
        spec.queue_name = resolve_setting_refs(str(trigger.get("queueName") or ""), env, name).lower()
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]", spec.queue_name):
            raise IndexingError(f"{name}: '{spec.queue_name}' is not a valid queue name")
    elif spec.trigger_type == "timerTrigger":
        schedule = resolve_setting_refs(str(trigger.get("schedule") or ""), env, name)
        from tools.devhost.timers import parse_schedule

        try:
            parse_schedule(schedule)
        except ValueError as exc:
            raise IndexingError(f"{name}: the timer schedule '{schedule}' is invalid: {exc}") from None
        spec.schedule = schedule
        spec.run_on_startup = bool(trigger.get("runOnStartup"))
    return spec


def blob_pattern_regex(pattern: str) -> re.Pattern[str]:
    """`{name}` style blob path pattern -> regex with named groups (a name may span '/', as in the host)."""
    out, pos = [], 0
    for match in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", pattern):
        out.append(re.escape(pattern[pos:match.start()]))
        out.append(f"(?P<{match.group(1)}>.+)")
        pos = match.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")
