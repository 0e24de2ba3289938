"""Online endpoints: PUT/GET/PATCH/DELETE, list, listKeys, regenerateKeys, token (mfe.json 2024-10-01)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from tools.azureml import arm, operations, resources, traffic
from tools.azureml.state import Endpoint, Operation, new_key
from tools.azureml.workspace import BASE, aml_of, check_name

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

routes = web.RouteTableDef()
EP = BASE + "/onlineEndpoints/{endpoint}"
AUTH_MODES = {"key": "Key", "amltoken": "AMLToken", "aadtoken": "AADToken"}
RTYPE = "workspaces/onlineEndpoints"


def endpoint_of(request: web.Request) -> tuple[AzureML, Endpoint]:
    aml = aml_of(request)
    name = request.match_info["endpoint"]
    ep = aml.store.state.endpoints.get(name)
    if ep is None:
        raise arm.not_found(f"workspaces/{aml.config.workspace_name}/onlineEndpoints", name,
                            aml.config.resource_group)
    return aml, ep


@routes.get(BASE + "/onlineEndpoints", name="azureml.list_endpoints")
@arm.management(RTYPE)
async def list_endpoints(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    items = [resources.endpoint(aml, ep) for ep in aml.store.state.endpoints.values()
             if request.query.get("name") in (None, ep.name)]
    return arm.json_response(resources.page(items))


@routes.get(EP, name="azureml.get_endpoint")
@arm.management(RTYPE)
async def get_endpoint(request: web.Request) -> web.StreamResponse:
    aml, ep = endpoint_of(request)
    return arm.json_response(resources.endpoint(aml, ep))


def _auth_mode(props: dict[str, Any]) -> str:
    mode = props.get("authMode")
    if not isinstance(mode, str) or mode.lower().replace("_", "") not in AUTH_MODES:
        raise arm.bad_argument("properties.authMode is required: Key, AMLToken or AADToken.",
                               target="properties.authMode")
    return AUTH_MODES[mode.lower().replace("_", "")]


@routes.put(EP, name="azureml.put_endpoint")
@arm.management(RTYPE)
async def put_endpoint(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    name = request.match_info["endpoint"]
    body = await arm.json_body(request)
    if not isinstance(body.get("location"), str) or not body["location"]:
        raise arm.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    props = body.get("properties")
    if not isinstance(props, dict):
        raise arm.bad_argument("properties is required.", target="properties")
    mode = _auth_mode(props)
    state = aml.store.state
    existing = state.endpoints.get(name)
    if existing is None:
        check_name("Endpoint", name)
        if len(state.endpoints) >= aml.config.limits.endpoints:
            raise arm.ArmError(400, "OutOfQuota", f"The subscription has {len(state.endpoints)} online endpoints "
                                                  f"in this region, its limit; delete some or ask for more.")
    else:
        operations.hold(aml, existing, f"update endpoint '{name}'")
    weights, mirror = traffic.check(state, name, props.get("traffic"), props.get("mirrorTraffic"))
    fields = {"location": body["location"], "tags": body.get("tags") or {}, "identity": body.get("identity"),
              "kind": body.get("kind"), "sku": body.get("sku"), "auth_mode": mode,
              "description": props.get("description"), "properties": props.get("properties") or {},
              "public_network_access": props.get("publicNetworkAccess") or "Enabled"}
    if existing is None:
        ep = Endpoint(name=name, traffic=weights, mirror_traffic=mirror,
                      system_data=arm.system_data(request["claims"]), **fields)
        state.endpoints[name] = ep
        op = operations.begin(aml, "endpoint.create", ep, aml.config.timing.endpoint_create)
        return arm.json_response(resources.endpoint(aml, ep), 201, operations.lro_headers(aml, op, location=False))
    for key, value in fields.items():
        setattr(existing, key, value)
    existing.system_data = arm.system_data(request["claims"], {k: v for k, v in existing.system_data.items()
                                                               if k.startswith("created")})
    existing.provisioning_state = "Updating"
    op = operations.begin(aml, "endpoint.update", existing, aml.config.timing.endpoint_update,
                          payload={"traffic": weights, "mirror": mirror})
    shown = resources.endpoint(aml, existing)
    shown["properties"].update(traffic=weights, mirrorTraffic=mirror)
    return arm.json_response(shown, 200, operations.lro_headers(aml, op, location=False))


@routes.patch(EP, name="azureml.patch_endpoint")
@arm.management(RTYPE)
async def patch_endpoint(request: web.Request) -> web.StreamResponse:
    aml, ep = endpoint_of(request)
    body = await arm.json_body(request)
    arm.expect_keys(body, {"tags", "identity"},
                    "PATCH of an online endpoint (PartialMinimalTrackedResourceWithIdentity)")
    operations.hold(aml, ep, f"update endpoint '{ep.name}'")
    ep.provisioning_state = "Updating"
    op = operations.begin(aml, "endpoint.patch", ep, aml.config.timing.endpoint_update, payload=body)
    return arm.empty_response(202, operations.lro_headers(aml, op, location=True))


@routes.delete(EP, name="azureml.delete_endpoint")
@arm.management(RTYPE)
async def delete_endpoint(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    ep = aml.store.state.endpoints.get(request.match_info["endpoint"])
    if ep is None:
        return arm.empty_response(204)
    operations.hold(aml, ep, f"delete endpoint '{ep.name}'")
    ep.provisioning_state = "Deleting"
    for dep in aml.store.state.deployments_of(ep.name):
        dep.provisioning_state = "Deleting"
    op = operations.begin(aml, "endpoint.delete", ep, aml.config.timing.endpoint_delete, result="empty")
    return arm.empty_response(202, operations.lro_headers(aml, op, location=True))


def _keys_mode(ep: Endpoint, action: str) -> None:
    if ep.auth_mode != "Key":
        raise arm.bad_argument(f"{action} applies to endpoints with authMode Key; '{ep.name}' uses {ep.auth_mode}.")


@routes.post(EP + "/listKeys", name="azureml.list_keys")
@arm.management(RTYPE)
async def list_keys(request: web.Request) -> web.StreamResponse:
    _, ep = endpoint_of(request)
    _keys_mode(ep, "listKeys")
    return arm.json_response({"primaryKey": ep.primary_key, "secondaryKey": ep.secondary_key})


@routes.post(EP + "/regenerateKeys", name="azureml.regenerate_keys")
@arm.management(RTYPE)
async def regenerate_keys(request: web.Request) -> web.StreamResponse:
    aml, ep = endpoint_of(request)
    body = await arm.json_body(request)
    kind = body.get("keyType")
    if kind not in ("Primary", "Secondary"):
        raise arm.bad_argument("keyType is required: Primary or Secondary.", target="keyType")
    value = body.get("keyValue")
    if value is not None and (not isinstance(value, str) or len(value) < 16):
        raise arm.bad_argument("keyValue, when given, must be a string of at least 16 characters.",
                               target="keyValue")
    _keys_mode(ep, "regenerateKeys")
    operations.hold(aml, ep, f"regenerate the keys of endpoint '{ep.name}'")
    op = operations.begin(aml, "endpoint.keys", ep, aml.config.timing.keys,
                          payload={"keyType": kind, "keyValue": value}, result="empty")
    return arm.empty_response(202, operations.lro_headers(aml, op, location=True))


@routes.post(EP + "/token", name="azureml.get_token")
@arm.management(RTYPE)
async def get_token(request: web.Request) -> web.StreamResponse:
    aml, ep = endpoint_of(request)
    if ep.auth_mode != "AMLToken":
        raise arm.bad_argument(f"token applies to endpoints with authMode AMLToken; '{ep.name}' uses "
                               f"{ep.auth_mode}.")
    now = int(time.time())
    expiry = now + aml.config.token_seconds
    token = jwt.encode({"aud": aml.scoring_uri(ep.name), "endpoint": ep.name, "iat": now, "nbf": now - 60,
                        "exp": expiry, "iss": aml.arm_url}, aml.token_key, algorithm="HS256")
    return arm.json_response({"accessToken": token, "tokenType": "Bearer", "expiryTimeUtc": expiry,
                              "refreshAfterTimeUtc": now + aml.config.token_seconds // 2})


# ---- how the operations end ---------------------------------------------------------------------------------
@operations.finisher("endpoint.create")
async def _created(aml: AzureML, op: Operation) -> None:
    ep = aml.store.state.endpoints.get(op.endpoint)
    if ep is not None:
        ep.provisioning_state = "Succeeded"


@operations.finisher("endpoint.update")
async def _updated(aml: AzureML, op: Operation) -> None:
    ep = aml.store.state.endpoints.get(op.endpoint)
    if ep is not None:
        ep.traffic, ep.mirror_traffic = dict(op.payload["traffic"]), dict(op.payload["mirror"])
        ep.provisioning_state = "Succeeded"


@operations.finisher("endpoint.patch")
async def _patched(aml: AzureML, op: Operation) -> None:
    ep = aml.store.state.endpoints.get(op.endpoint)
    if ep is not None:
        if "tags" in op.payload:
            ep.tags = op.payload["tags"] or {}
        if "identity" in op.payload:
            ep.identity = op.payload["identity"]
        ep.provisioning_state = "Succeeded"


@operations.finisher("endpoint.keys")
async def _rekeyed(aml: AzureML, op: Operation) -> None:
    ep = aml.store.state.endpoints.get(op.endpoint)
    if ep is not None:
        value = op.payload.get("keyValue") or new_key()
        if op.payload["keyType"] == "Primary":
            ep.primary_key = value
        else:
            ep.secondary_key = value


@operations.finisher("endpoint.delete")
async def _deleted(aml: AzureML, op: Operation) -> None:
    state = aml.store.state
    for dep in state.deployments_of(op.endpoint):
        state.deployments.pop(f"{dep.endpoint}/{dep.name}", None)
    state.endpoints.pop(op.endpoint, None)
    aml.rngs.pop(op.endpoint, None)
