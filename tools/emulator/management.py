"""The web-service management API (`management.azureml.net` paths): web services and endpoints.

List/get web services; list/get/create (PUT)/PATCH/DELETE/refresh endpoints, with the reference's JSON field
names, name rules, throttling rules and the error envelope. PATCH downloads the `.ilearner` through its SAS
location and checks it before the endpoint takes it; the model becomes active after `propagation_seconds`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiohttp import web

from tools.emulator.blobs import BlobFetchError
from tools.emulator.context import Emulator, bearer_token, emulator, json_body, json_response, same_secret
from tools.emulator.errors import StudioError, bad_argument, not_found, unauthorized
from tools.emulator.learner import ModelError, check_document
from tools.emulator.state import EndpointState, Location, PendingModel, Resource, ServiceState, now_iso

NAME_RULE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$")
THROTTLE_LEVELS = ("Low", "High")
TRACE_LEVELS = ("None", "Error", "All")
MODEL_EXTENSION = ".ilearner"

routes = web.RouteTableDef()
WS = "/workspaces/{ws}/webservices"
EP = WS + "/{svc}/endpoints/{name}"


# ---- rendering ---------------------------------------------------------------------------------------------
def service_json(emu: Emulator, svc: ServiceState) -> dict[str, Any]:
    return {"Id": svc.id, "Name": svc.name, "Description": svc.description, "CreationTime": svc.creation_time,
            "WorkspaceId": emu.store.ws.id, "DefaultEndpointName": svc.default_endpoint,
            "EndpointCount": len(svc.endpoints)}


def resources_json(emu: Emulator, svc: ServiceState, ep: EndpointState) -> list[dict[str, Any]]:
    out = []
    for res in ep.resources:
        loc = res.Location
        if loc.SasBlobToken is None:
            # A model in workspace storage (the initial one): hand out a fresh read-only token.
            loc = Location(BaseLocation=loc.BaseLocation, RelativeLocation=loc.RelativeLocation,
                           SasBlobToken=emu.workspace_storage.read_sas(loc.RelativeLocation,
                                                                       emu.result_sas_lifetime))
        out.append({"Name": res.Name, "Kind": res.Kind, "Location": loc.model_dump()})
    return out


def endpoint_json(emu: Emulator, svc: ServiceState, ep: EndpointState) -> dict[str, Any]:
    ws = emu.store.ws.id
    return {
        "Name": ep.name, "Description": ep.description, "CreationTime": ep.creation_time,
        "WorkspaceId": ws, "WebServiceId": svc.id, "HelpLocation": emu.help_location(svc, ep),
        "PrimaryKey": ep.primary_key, "SecondaryKey": ep.secondary_key, "ApiLocation": emu.api_location(ep),
        "Version": ep.version, "PreventUpdate": ep.prevent_update, "SampleDataEnabled": False,
        "ExperimentLocation": f"{emu.base_url}/Home/ViewWorkspace/{ws}#/experiments/{svc.id}",
        "MaxConcurrentCalls": ep.max_concurrent_calls, "DiagnosticsTraceLevel": ep.diagnostics_trace_level,
        "ThrottleLevel": ep.throttle_level, "Resources": resources_json(emu, svc, ep),
    }


# ---- lookups and auth ----------------------------------------------------------------------------------------
def _authorize(request: web.Request, ep: EndpointState | None = None) -> None:
    """The workspace token works everywhere; an endpoint's own keys work for that endpoint's operations."""
    emu = emulator(request)
    token = bearer_token(request)
    if same_secret(token, emu.store.ws.token):
        return
    if ep is not None and same_secret(token, ep.primary_key, ep.secondary_key):
        return
    raise unauthorized("ManagementRequestUnauthorized")


def _workspace(request: web.Request) -> Emulator:
    emu = emulator(request)
    if request.match_info["ws"] != emu.store.ws.id:
        raise not_found("WorkspaceNotFound", f"Workspace {request.match_info['ws']} was not found.")
    return emu


def _service(emu: Emulator, request: web.Request) -> ServiceState:
    svc = emu.store.service(request.match_info["svc"])
    if svc is None:
        raise not_found("WebServiceNotFound", f"Web service {request.match_info['svc']} was not found in "
                                              f"workspace {emu.store.ws.id}.")
    return svc


def _endpoint_op(request: web.Request) -> tuple[Emulator, ServiceState, EndpointState | None]:
    """Workspace, service and (maybe missing) endpoint of an endpoint URL, authorized."""
    emu = _workspace(request)
    svc = emu.store.service(request.match_info["svc"])
    ep = svc.endpoints.get(request.match_info["name"]) if svc else None
    _authorize(request, ep)
    if svc is None:
        svc = _service(emu, request)
    return emu, svc, ep


def _existing(svc: ServiceState, ep: EndpointState | None, name: str) -> EndpointState:
    if ep is None:
        raise not_found("EndpointNotFound", f"Endpoint '{name}' was not found in web service {svc.id}.")
    return ep


# ---- web services -----------------------------------------------------------------------------------------
@routes.get(WS, name="management.list_services")
async def list_services(request: web.Request) -> web.Response:
    emu = _workspace(request)
    _authorize(request)
    services = [service_json(emu, s) for s in emu.store.ws.services.values()]
    return json_response(services) if services else web.Response(status=204)


@routes.get(WS + "/{svc}", name="management.get_service")
async def get_service(request: web.Request) -> web.Response:
    emu = _workspace(request)
    _authorize(request)
    return json_response(service_json(emu, _service(emu, request)))


# ---- endpoints --------------------------------------------------------------------------------------------
@routes.get(WS + "/{svc}/endpoints", name="management.list_endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    emu = _workspace(request)
    _authorize(request)
    svc = _service(emu, request)
    endpoints = [endpoint_json(emu, svc, ep) for ep in svc.endpoints.values()]
    return json_response(endpoints) if endpoints else web.Response(status=204)


@routes.get(EP, name="management.get_endpoint")
async def get_endpoint(request: web.Request) -> web.Response:
    emu, svc, ep = _endpoint_op(request)
    return json_response(endpoint_json(emu, svc, _existing(svc, ep, request.match_info["name"])))


def _throttle(emu: Emulator, level: object, calls: object, current: EndpointState | None) -> tuple[str, int]:
    level = level if level is not None else (current.throttle_level if current else "Low")
    if level not in THROTTLE_LEVELS:
        raise bad_argument("InvalidThrottleLevel", f"ThrottleLevel must be one of {', '.join(THROTTLE_LEVELS)}.")
    if emu.store.ws.tier == "free":
        if level != "Low":
            raise bad_argument("InvalidThrottleLevel", "ThrottleLevel 'High' needs a standard (paid) workspace.")
        return "Low", 4  # MaxConcurrentCalls is ignored on the free tier
    if level == "Low":
        return "Low", 4  # Low caps MaxConcurrentCalls at 4
    if calls is None:
        calls = current.max_concurrent_calls if current and current.throttle_level == "High" else 20
    if not isinstance(calls, int) or isinstance(calls, bool) or not 1 <= calls <= 200:
        raise bad_argument("InvalidMaxConcurrentCalls", "With ThrottleLevel 'High', MaxConcurrentCalls must be "
                                                        "an integer from 1 to 200.")
    return "High", calls


def _description(value: object) -> str:
    if not isinstance(value, str):
        raise bad_argument("RequestBodyInvalid", "Description must be a string.")
    if len(value) > 2000:
        raise bad_argument("RequestBodyInvalid", "Description is limited to 2000 characters.")
    return value


@routes.put(EP, name="management.put_endpoint")
async def put_endpoint(request: web.Request) -> web.Response:
    emu, svc, ep = _endpoint_op(request)
    name = request.match_info["name"]
    if not NAME_RULE.match(name):
        raise bad_argument("InvalidEndpointName", "Endpoint names have at most 24 characters: lower-case letters, "
                                                  "digits and hyphens, not starting or ending with a hyphen.")
    body = await json_body(request, allow_empty=True) or {}
    if not isinstance(body, dict):
        raise bad_argument("RequestBodyInvalid", "The request body must be a JSON object.")
    # looked up after the last await: two PUTs of one name at once create it once (the second is a conflict)
    ep = svc.endpoints.get(name)
    if ep is not None:
        raise StudioError("Conflict", "EndpointAlreadyExists", f"Endpoint '{name}' already exists.")
    limit = 3 if emu.store.ws.tier == "free" else emu.config.max_endpoints
    if len(svc.endpoints) >= limit:
        raise bad_argument("EndpointLimitReached", f"A web service can have at most {limit} endpoints "
                                                   "(the default endpoint included).")
    level, calls = _throttle(emu, body.get("ThrottleLevel"), body.get("MaxConcurrentCalls"), None)
    prevent = body.get("PreventUpdate", False)
    if not isinstance(prevent, bool):
        raise bad_argument("RequestBodyInvalid", "PreventUpdate must be true or false.")
    default = svc.endpoints[svc.default_endpoint]
    new = EndpointState(name=name, description=_description(body.get("Description") or ""), version=svc.version,
                        prevent_update=prevent, throttle_level=level, max_concurrent_calls=calls,
                        resources=[r.model_copy(deep=True) for r in default.resources],
                        active_model=emu.store.active_model_sha(default, time.time()))
    svc.endpoints[name] = new
    emu.store.index_endpoint(svc, new)
    emu.store.mark_dirty()
    return json_response(endpoint_json(emu, svc, new))


@routes.delete(EP, name="management.delete_endpoint")
async def delete_endpoint(request: web.Request) -> web.Response:
    emu, svc, ep = _endpoint_op(request)
    ep = _existing(svc, ep, request.match_info["name"])
    if ep.name == svc.default_endpoint:
        raise StudioError("InvalidOperation", "DefaultEndpointNotDeletable",
                          "The default endpoint cannot be deleted; delete the web service instead.")
    del svc.endpoints[ep.name]
    emu.store.unindex_endpoint(ep)
    emu.store.mark_dirty()
    return web.Response(status=204)


def _parse_resources(svc: ServiceState, raw: object) -> list[Resource]:
    if not isinstance(raw, list) or not raw:
        raise bad_argument("RequestBodyInvalid", "Resources must be a non-empty array of "
                                                 "{Name, Location: {BaseLocation, RelativeLocation, SasBlobToken}}.")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise bad_argument("RequestBodyInvalid", "Each resource must be an object.")
        name = item.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise bad_argument("InvalidResourceName", "Resource name is empty string.")
        if name != svc.resource_name:
            raise bad_argument("InvalidResourceName", f"'{name}' is not an updatable resource of this web service; "
                                                      f"its trained model resource is '{svc.resource_name}'.")
        loc = item.get("Location")
        if not isinstance(loc, dict):
            raise bad_argument("RequestBodyInvalid", f"Resource '{name}' has no Location object.")
        fields = {}
        for key in ("BaseLocation", "RelativeLocation", "SasBlobToken"):
            value = loc.get(key)
            if not isinstance(value, str) or not value.strip():
                raise bad_argument("InvalidBlob", f"Location.{key} of resource '{name}' is missing or empty.")
            fields[key] = value.strip()
        if not fields["BaseLocation"].startswith(("http://", "https://")):
            raise bad_argument("InvalidBlob", "Location.BaseLocation must be an http(s) URL of a blob service.")
        if not fields["RelativeLocation"].lower().endswith(MODEL_EXTENSION):
            raise bad_argument("InvalidBlobExtension", f"The blob reference: {fields['RelativeLocation']} has an "
                                                       "invalid or missing file extension. A trained model must "
                                                       "be saved as .ilearner.")
        out.append(Resource(Name=name, Location=Location(**fields)))
    return out


def blob_url(loc: Location) -> str:
    token = loc.SasBlobToken or ""
    if token and not token.startswith("?"):
        token = "?" + token
    return loc.BaseLocation.rstrip("/") + "/" + loc.RelativeLocation.lstrip("/") + token


FETCH_ERRORS = {
    "expired": ("BadArgument", "SasTokenExpired"),
    "auth": ("BadArgument", "BlobAuthenticationFailed"),
    "missing": ("BadArgument", "BlobNotFound"),
    "unavailable": ("InternalError", "UpdateWebServiceResourceFailed"),
}


async def _fetch_model(emu: Emulator, res: Resource) -> str:
    """Download and check the model of one resource; store it; return its sha."""
    loc = res.Location
    try:
        data = await emu.fetcher.fetch(blob_url(loc), loc.SasBlobToken or "")
    except BlobFetchError as exc:
        code, detail = FETCH_ERRORS[exc.reason]
        raise StudioError(code, detail, f"The blob reference: {loc.RelativeLocation} could not be read: {exc}") \
            from None
    try:
        check_document(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StudioError("InvalidOperation", "IncompatibleModel",
                          f"The blob {loc.RelativeLocation} is not a trained model this web service can use.") \
            from None
    except ModelError as exc:
        raise StudioError("InvalidOperation", "IncompatibleModel", f"The blob {loc.RelativeLocation}: {exc}.") \
            from None
    return emu.store.add_model(data)


@routes.patch(EP, name="management.patch_endpoint")
async def patch_endpoint(request: web.Request) -> web.Response:
    emu, svc, ep = _endpoint_op(request)
    ep = _existing(svc, ep, request.match_info["name"])
    body = await json_body(request)
    if not isinstance(body, dict):
        raise bad_argument("RequestBodyInvalid", "The request body must be a JSON object.")
    resources: list[Resource] | None = None
    if "Resources" in body:
        if svc.kind == "training" or not svc.resource_name:
            raise StudioError("InvalidOperation", "NoUpdatableResources",
                              "This web service has no updatable resources; patch the predictive web service, "
                              "not the training web service.")
        if ep.name == svc.default_endpoint:
            raise StudioError("InvalidOperation", "DefaultEndpointNotUpdatable",
                              "The default endpoint is kept in sync with the experiment; its trained model cannot "
                              "be replaced. Patch a non-default endpoint.")
        resources = _parse_resources(svc, body["Resources"])
    description = _description(body["Description"]) if "Description" in body else None
    trace = body.get("DiagnosticsTraceLevel")
    if trace is not None and trace not in TRACE_LEVELS:
        raise bad_argument("RequestBodyInvalid", f"DiagnosticsTraceLevel must be one of {', '.join(TRACE_LEVELS)}.")
    throttle = None
    if "ThrottleLevel" in body or "MaxConcurrentCalls" in body:
        throttle = _throttle(emu, body.get("ThrottleLevel"), body.get("MaxConcurrentCalls"), ep)
    sha = None
    if resources:
        for res in resources:  # one trained-model resource per service: the last one wins
            sha = await _fetch_model(emu, res)
    # Everything is checked: apply.
    if resources and sha:
        ep.resources = resources
        ep.pending_model = PendingModel(sha=sha, activate_at=time.time() + emu.config.propagation_seconds)
        emu.store.active_model_sha(ep, time.time())
    if description is not None:
        ep.description = description
    if trace is not None:
        ep.diagnostics_trace_level = trace
    if throttle is not None:
        ep.throttle_level, ep.max_concurrent_calls = throttle
    emu.store.mark_dirty()
    return json_response(endpoint_json(emu, svc, ep))


@routes.post(EP + "/refresh", name="management.refresh_endpoint")
async def refresh_endpoint(request: web.Request) -> web.Response:
    emu, svc, ep = _endpoint_op(request)
    ep = _existing(svc, ep, request.match_info["name"])
    if ep.name == svc.default_endpoint:
        raise StudioError("InvalidOperation", "DefaultEndpointNotRefreshable", "The default endpoint cannot be "
                                                                               "refreshed; it follows the experiment.")
    if ep.prevent_update:
        raise StudioError("InvalidOperation", "EndpointUpdatePrevented",
                          "This endpoint was created with PreventUpdate and cannot be refreshed.")
    body = await json_body(request, allow_empty=True) or {}
    overwrite = str(body.get("OverwriteResources", "False")).lower() == "true" if isinstance(body, dict) else False
    default = svc.endpoints[svc.default_endpoint]
    changed = ep.version != svc.version
    ep.version = svc.version
    if overwrite:
        default_sha = emu.store.active_model_sha(default, time.time())
        if ep.active_model != default_sha or [r.model_dump() for r in ep.resources] != \
                [r.model_dump() for r in default.resources]:
            ep.resources = [r.model_copy(deep=True) for r in default.resources]
            ep.active_model, ep.pending_model = default_sha, None
            changed = True
    if not changed:
        return web.Response(status=304)
    emu.store.mark_dirty()
    return json_response(endpoint_json(emu, svc, ep))


@routes.get("/apihelp/workspaces/{ws}/webservices/{svc}/endpoints/{guid}", name="management.help")
async def api_help(request: web.Request) -> web.Response:
    """A small stand-in for the endpoint's help page: the updatable resources and the API URLs."""
    emu = _workspace(request)
    svc = _service(emu, request)
    found = emu.store.endpoint_by_guid(request.match_info["guid"])
    if found is None or found[0].id != svc.id:
        raise not_found("EndpointNotFound", "No such endpoint.")
    ep = found[1]
    now = now_iso()
    return json_response({"Endpoint": ep.name, "UpdatableResources": [r.Name for r in ep.resources],
                          "Score": emu.api_location(ep) + "/execute?api-version=2.0&details=true",
                          "Jobs": emu.api_location(ep) + "/jobs?api-version=2.0", "GeneratedAt": now})
