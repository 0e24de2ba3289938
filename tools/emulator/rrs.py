"""Request-Response scoring (RRS) on every endpoint's ApiLocation, and its swagger document.

`POST {ApiLocation}/execute?api-version=2.0&details=true` takes the classic table format
(`Inputs.input1.{ColumnNames, Values}`) or, with `format=swagger`, a list of row objects. It scores with the
endpoint's active model and returns the input columns plus "Scored Labels" and "Scored Probabilities", values as
strings. `MaxConcurrentCalls` is enforced per endpoint: calls beyond it get 503 RequestThrottled.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tools.emulator import census_schema as schema
from tools.emulator.context import check_api_version, emulator, json_body, json_response, lookup_endpoint_by_guid
from tools.emulator.errors import StudioError, bad_argument
from tools.emulator.learner import DataError, ModelError
from tools.emulator.state import EndpointState, ServiceState

routes = web.RouteTableDef()
BASE = "/workspaces/{ws}/services/{guid}"
OUTPUT_COLUMNS = [("Scored Labels", "String"), ("Scored Probabilities", "Double")]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_classic(body: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    table = body["Inputs"]["input1"]
    if not isinstance(table, dict):
        raise StudioError("BadUserArgument", "InputParseError", "input1 must be an object with ColumnNames and "
                                                                "Values (or use format=swagger for row objects).")
    names, values = table.get("ColumnNames"), table.get("Values")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StudioError("BadUserArgument", "InputParseError", "input1.ColumnNames must be a list of strings.")
    if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
        raise StudioError("BadUserArgument", "InputParseError", "input1.Values must be a list of rows (lists).")
    for i, row in enumerate(values):
        if len(row) != len(names):
            raise StudioError("BadUserArgument", "InputMismatchError",
                              f"input1 row {i + 1} has {len(row)} values; ColumnNames has {len(names)}.")
    return list(names), [[_cell(v) for v in row] for row in values]


def _parse_swagger(body: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = body["Inputs"]["input1"]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise StudioError("BadUserArgument", "InputParseError", "With format=swagger, input1 must be a list of "
                                                                "row objects.")
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row if k not in names)
    return names, [[_cell(row.get(n)) for n in names] for row in rows]


def _score(emu_store: Any, svc: ServiceState, ep: EndpointState, names: list[str],
           rows: list[list[str]]) -> tuple[list[str], list[str], list[list[str]]]:
    sha = emu_store.active_model_sha(ep, time.time())
    if sha is None:
        raise StudioError("InternalError", "ResourceLoadFailed", "The endpoint has no trained model.")
    try:
        model = emu_store.model(sha)
    except ModelError as exc:
        raise StudioError("InternalError", "ResourceLoadFailed", f"The endpoint could not load its trained model: "
                                                                 f"{exc}.") from None
    columns = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    try:
        proba = model.predict_proba(columns, len(rows))
    except DataError as exc:
        code = "InputMismatchError" if "missing input column" in str(exc) else "InputParseError"
        raise StudioError("BadUserArgument", code, str(exc)) from None
    labels = model.label(proba)
    out_names = names + [n for n, _ in OUTPUT_COLUMNS]
    types = [schema.COLUMN_TYPES.get(n, "String") for n in names] + [t for _, t in OUTPUT_COLUMNS]
    out_rows = [row + [labels[i], repr(float(proba[i]))] for i, row in enumerate(rows)]
    return out_names, types, out_rows


@routes.post(BASE + "/execute", name="rrs.execute")
async def execute(request: web.Request) -> web.Response:
    check_api_version(request)
    svc, ep = lookup_endpoint_by_guid(request)
    if svc.kind != "predictive":
        raise bad_argument("RequestResponseNotSupported", "This is a training web service: run it with the Batch "
                                                          "Execution Service (jobs), not request-response.")
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("Inputs"), dict):
        raise bad_argument("RequestBodyInvalid", "The request body must be {\"Inputs\": {\"input1\": ...}, "
                                                 "\"GlobalParameters\": {}}.")
    if "input1" not in body["Inputs"] or len(body["Inputs"]) != 1:
        raise bad_argument("InvalidInputNames", "This web service has one input, named input1.")
    swagger = request.query.get("format", "").lower() == "swagger"
    names, rows = _parse_swagger(body) if swagger else _parse_classic(body)
    out_names, types, out_rows = _score(emulator(request).store, svc, ep, names, rows)
    if swagger:
        return json_response({"Results": {"output1": [dict(zip(out_names, r, strict=True)) for r in out_rows]}})
    value: dict[str, Any] = {"ColumnNames": out_names}
    if request.query.get("details", "").lower() == "true":
        value["ColumnTypes"] = types
    value["Values"] = out_rows
    return json_response({"Results": {"output1": {"type": "table", "value": value}}})


@routes.get(BASE + "/swagger.json", name="rrs.swagger")
async def swagger(request: web.Request) -> web.Response:
    check_api_version(request)
    svc, ep = lookup_endpoint_by_guid(request)
    props = {c: {"type": "integer" if schema.COLUMN_TYPES[c] == "Int32" else "string"} for c in schema.COLUMNS}
    return json_response({
        "swagger": "2.0",
        "info": {"title": svc.name, "version": "2.0", "x-endpoint-name": ep.name},
        "host": request.host, "basePath": BASE.format(ws=emulator(request).store.ws.id, guid=ep.guid),
        "schemes": [request.scheme],
        "paths": {"/execute?api-version=2.0&format=swagger": {"post": {"operationId": "execute"}},
                  "/jobs?api-version=2.0": {"post": {"operationId": "submitJob"}}},
        "definitions": {"input1Item": {"type": "object", "properties": props}},
    })


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def throttle_middleware() -> Any:
    """Count in-flight scoring calls per endpoint; refuse those beyond MaxConcurrentCalls with 503."""
    in_flight: dict[str, int] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        if route.name != "rrs.execute":
            return await handler(request)
        guid = request.match_info.get("guid", "")
        found = emulator(request).store.endpoint_by_guid(guid)
        limit = found[1].max_concurrent_calls if found else 0
        if found and in_flight.get(guid, 0) >= limit:
            return StudioError("ServiceUnavailable", "RequestThrottled",
                               f"Request is throttled: the endpoint allows {limit} concurrent calls.",
                               headers={"Retry-After": "1"}).response()
        in_flight[guid] = in_flight.get(guid, 0) + 1
        try:
            return await handler(request)
        finally:
            in_flight[guid] -= 1
            if not in_flight[guid]:
                del in_flight[guid]

    return middleware
