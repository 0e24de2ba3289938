"""Online deployments: PUT/GET/PATCH/DELETE, list, getLogs (mfe.json 2024-10-01), and what provisioning does:
check the instance quota, download the registered model from storage, load it (the classic learner's loader, as an
inference server's init() would) - a model that cannot load ends the deployment Failed (ResourceNotReady) with the
container's error in its InferenceServer logs."""

from __future__ import annotations

import json
import math
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tools.azureml import arm, events, operations, resources, storage
from tools.azureml import faults as dfaults
from tools.azureml.endpoints import EP, endpoint_of
from tools.azureml.state import Deployment, Operation
from tools.azureml.workspace import check_name
from tools.emulator.learner import ModelError, load_model

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

routes = web.RouteTableDef()
DEP = EP + "/deployments/{deployment}"
RTYPE = "workspaces/onlineEndpoints/deployments"
RESERVE = 1.2  # 20 % extra quota reserved for upgrades
_MODEL_ID = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)


def deployment_of(request: web.Request) -> tuple[AzureML, Deployment]:
    aml, ep = endpoint_of(request)
    name = request.match_info["deployment"]
    dep = aml.store.state.deployments.get(f"{ep.name}/{name}")
    if dep is None:
        raise arm.not_found(f"workspaces/{aml.config.workspace_name}/onlineEndpoints/{ep.name}/deployments", name,
                            aml.config.resource_group)
    return aml, dep


def model_key(aml: AzureML, ref: str) -> str:
    """`<name>/<version>` of a registered model version named by its ARM id (or `azureml:<name>:<version>`)."""
    match = _MODEL_ID.search(ref)
    if match and ref.lower().startswith(aml.config.workspace_id.lower() + "/models/"):
        key = f"{match['name']}/{match['version']}"
    elif ref.startswith("azureml:") and ref.count(":") == 2:
        key = "/".join(ref.split(":")[1:])
    else:
        raise arm.bad_argument(f"properties.model '{ref}' must be the ARM id of a model version in this workspace "
                               f"({aml.config.workspace_id}/models/<name>/versions/<version>).",
                               target="properties.model")
    if key not in aml.store.state.models:
        raise arm.bad_argument(f"Model version '{key.replace('/', ':')}' was not found in the workspace.",
                               target="properties.model")
    return key


def _capacity(sku: Any, aml: AzureML) -> int:
    capacity = (sku or {}).get("capacity", 1) if isinstance(sku, dict | None) else None
    limit = aml.config.limits.instances_per_deployment
    if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= limit:
        raise arm.bad_argument(f"sku.capacity (the instance count) must be an integer from 1 to {limit}.",
                               target="sku.capacity")
    return capacity


@routes.get(EP + "/deployments", name="azureml.list_deployments")
@arm.management(RTYPE)
async def list_deployments(request: web.Request) -> web.StreamResponse:
    aml, ep = endpoint_of(request)
    return arm.json_response(resources.page([resources.deployment(aml, d)
                                             for d in aml.store.state.deployments_of(ep.name)]))


@routes.get(DEP, name="azureml.get_deployment")
@arm.management(RTYPE)
async def get_deployment(request: web.Request) -> web.StreamResponse:
    aml, dep = deployment_of(request)
    return arm.json_response(resources.deployment(aml, dep))


@routes.put(DEP, name="azureml.put_deployment")
@arm.management(RTYPE)
async def put_deployment(request: web.Request) -> web.StreamResponse:
    aml, ep = endpoint_of(request)
    name = request.match_info["deployment"]
    body = await arm.json_body(request)
    if not isinstance(body.get("location"), str) or not body["location"]:
        raise arm.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    props = body.get("properties")
    if not isinstance(props, dict):
        raise arm.bad_argument("properties is required.", target="properties")
    if props.get("endpointComputeType", "Managed") != "Managed":
        raise arm.bad_argument("Only Managed online deployments are supported here (endpointComputeType).",
                               target="properties.endpointComputeType")
    if not isinstance(props.get("model"), str):
        raise arm.bad_argument("properties.model (a registered model version's ARM id) is required.",
                               target="properties.model")
    model_key(aml, props["model"])
    capacity = _capacity(body.get("sku"), aml)
    state = aml.store.state
    key = f"{ep.name}/{name}"
    existing = state.deployments.get(key)
    if existing is None:
        check_name("Deployment", name)
    operations.hold(aml, ep, f"{'update' if existing else 'create'} deployment '{name}' in endpoint '{ep.name}'")
    if existing is None and len(state.deployments_of(ep.name)) >= aml.config.limits.deployments_per_endpoint:
        raise arm.bad_argument(f"Endpoint '{ep.name}' has {aml.config.limits.deployments_per_endpoint} "
                               f"deployments, the most one endpoint may have.")
    sku = dict(body.get("sku") or {"name": "Default"}, capacity=capacity)
    fields = {"location": body["location"], "tags": body.get("tags") or {}, "identity": body.get("identity"),
              "kind": body.get("kind")}
    ep.provisioning_state = "Updating"
    if existing is None:
        dep = Deployment(endpoint=ep.name, name=name, properties=props, sku=sku,
                         system_data=arm.system_data(request["claims"]), **fields)
        state.deployments[key] = dep
        op = _begin(aml, ep, dep, "deployment.create", aml.config.timing.deployment_create)
        return arm.json_response(resources.deployment(aml, dep), 201, operations.lro_headers(aml, op, False))
    existing.pending = {"properties": props, "sku": sku, **fields}
    existing.provisioning_state = "Updating"
    op = _begin(aml, ep, existing, "deployment.update", aml.config.timing.deployment_update)
    shown = resources.deployment(aml, existing)
    shown["properties"] = {**props, "provisioningState": "Updating"}
    return arm.json_response(shown, 200, operations.lro_headers(aml, op, False))


def _begin(aml: AzureML, ep: Any, dep: Deployment, kind: str, seconds: float) -> Operation:
    fault = dfaults.take(aml.faults, dep.endpoint, dep.name)
    payload: dict[str, Any] = {}
    if fault is not None and fault.fail_after_seconds is not None:
        seconds = fault.fail_after_seconds
        payload["fail"] = {"code": fault.code, "message": fault.message}
    elif fault is not None and fault.stuck_seconds is not None:
        payload["stuck_until"] = time.time() + fault.stuck_seconds
    return operations.begin(aml, kind, ep, seconds, deployment=dep.name, payload=payload)


@routes.patch(DEP, name="azureml.patch_deployment")
@arm.management(RTYPE)
async def patch_deployment(request: web.Request) -> web.StreamResponse:
    aml, dep = deployment_of(request)
    body = await arm.json_body(request)
    arm.expect_keys(body, {"tags", "sku"}, "PATCH of an online deployment (PartialMinimalTrackedResourceWithSku)")
    if "sku" in body:
        _capacity(body["sku"], aml)
    ep = aml.store.state.endpoints[dep.endpoint]
    operations.hold(aml, ep, f"update deployment '{dep.name}' in endpoint '{ep.name}'")
    dep.provisioning_state = ep.provisioning_state = "Updating"
    op = operations.begin(aml, "deployment.patch", ep, aml.config.timing.deployment_update, deployment=dep.name,
                          payload=body)
    return arm.empty_response(202, operations.lro_headers(aml, op, location=True))


@routes.delete(DEP, name="azureml.delete_deployment")
@arm.management(RTYPE)
async def delete_deployment(request: web.Request) -> web.StreamResponse:
    aml, ep = endpoint_of(request)
    dep = aml.store.state.deployments.get(f"{ep.name}/{request.match_info['deployment']}")
    if dep is None:
        return arm.empty_response(204)
    if ep.traffic.get(dep.name, 0) > 0 or ep.mirror_traffic.get(dep.name, 0) > 0:
        raise arm.bad_argument(f"Deployment '{dep.name}' has traffic in endpoint '{ep.name}' (traffic "
                               f"{ep.traffic.get(dep.name, 0)}%, mirror {ep.mirror_traffic.get(dep.name, 0)}%); set "
                               f"its traffic to 0 before deleting it.")
    operations.hold(aml, ep, f"delete deployment '{dep.name}' in endpoint '{ep.name}'")
    dep.provisioning_state, ep.provisioning_state = "Deleting", "Updating"
    op = operations.begin(aml, "deployment.delete", ep, aml.config.timing.deployment_delete, deployment=dep.name,
                          result="empty")
    return arm.empty_response(202, operations.lro_headers(aml, op, location=True))


@routes.post(DEP + "/getLogs", name="azureml.get_logs")
@arm.management(RTYPE)
async def get_logs(request: web.Request) -> web.StreamResponse:
    _, dep = deployment_of(request)
    body = await arm.json_body(request)
    container = body.get("containerType") or "InferenceServer"
    if container not in ("InferenceServer", "StorageInitializer", "ModelDataCollector"):
        raise arm.bad_argument("containerType must be InferenceServer, StorageInitializer or ModelDataCollector.",
                               target="containerType")
    tail = body.get("tail")
    lines = dep.logs.get(container, [])
    if isinstance(tail, int) and not isinstance(tail, bool) and tail > 0:
        lines = lines[-tail:]
    return arm.json_response({"content": "\n".join(lines) + ("\n" if lines else "")})


# ---- provisioning -------------------------------------------------------------------------------------------
def _log(dep: Deployment, container: str, line: str) -> None:
    dep.logs.setdefault(container, []).append(f"{arm.now_iso()} {line}")


def _quota_problem(aml: AzureML, dep: Deployment, capacity: int) -> str | None:
    used = sum(math.ceil(d.instance_count * RESERVE) for d in aml.store.state.deployments.values()
               if d is not dep and d.serving is not None and d.provisioning_state != "Deleting")
    needed = math.ceil(capacity * RESERVE)
    limit = aml.config.limits.instance_quota
    if used + needed <= limit:
        return None
    instance_type = dep.properties.get("instanceType") or "Standard_F4s_v2"
    return (f"Not enough quota available for {instance_type} in SubscriptionId {aml.config.subscription_id}. "
            f"Current usage/limit: {used}/{limit}. Additional needed: {needed} (instances plus 20% reserved for "
            f"upgrades). Please see troubleshooting guide, available here: https://aka.ms/oe-tsg#error-outofquota")


async def _provision(aml: AzureML, op: Operation, dep: Deployment, props: dict[str, Any], capacity: int) -> None:
    stuck_until = op.payload.get("stuck_until")
    if isinstance(stuck_until, float) and time.time() < stuck_until:
        op.due = stuck_until
        return
    if "fail" in op.payload:
        _log(dep, "InferenceServer", f"ERROR: {op.payload['fail']['message']}")
        return _failed(op, dep, op.payload["fail"]["code"], op.payload["fail"]["message"])
    problem = _quota_problem(aml, dep, capacity)
    if problem:
        return _failed(op, dep, "OutOfQuota", problem)
    key = model_key(aml, str(props["model"]))
    model_uri = str(aml.store.state.models[key].properties.get("modelUri"))
    _log(dep, "StorageInitializer", f"Downloading model {key.replace('/', ':')} from {model_uri}")
    try:
        where, raw = await storage.read_model(aml, model_uri)
    except storage.UriError as exc:
        _log(dep, "StorageInitializer", f"ERROR: unable to download user model: {exc}")
        return _failed(op, dep, "BadArgument", f"Unable to download user model {key.replace('/', ':')}: {exc}")
    _log(dep, "StorageInitializer", f"Downloaded {len(raw)} bytes from {where.relative} to "
                                    f"/var/azureml-app/azureml-models/{key}")
    _log(dep, "InferenceServer", "Azure ML Inferencing HTTP server (stand-in); initializing the model")
    try:
        document = json.loads(raw)
        aml.loaded[raw.decode()] = load_model(document)
    except (ModelError, ValueError) as exc:
        _log(dep, "InferenceServer", "Traceback (most recent call last):")
        _log(dep, "InferenceServer", '  File "/var/azureml-server/aml_blueprint.py", in init')
        _log(dep, "InferenceServer", f"{type(exc).__name__}: the model could not be loaded: {exc}")
        _log(dep, "InferenceServer", "Worker exiting; the container crashed during init()")
        return _failed(op, dep, "ResourceNotReady", f"User container has crashed or terminated: the model could "
                                                    f"not be loaded ({exc}). Check the deployment logs.")
    dep.serving, dep.serving_model = raw.decode(), key
    dep.provisioning_state = "Succeeded"
    _log(dep, "InferenceServer", f"Model {key.replace('/', ':')} loaded; listening on port 31311")
    ep = aml.store.state.endpoints[dep.endpoint]
    events.publish(aml, "ModelDeployed", f"endpoints/{ep.name}", {
        "ServiceName": ep.name, "ServiceComputeType": "Managed", "ModelIds": key.replace("/", ":"),
        "ServiceTags": dict(ep.tags), "ServiceProperties": dict(ep.properties)})


def _failed(op: Operation, dep: Deployment, code: str, message: str) -> None:
    operations.fail(op, code, message)
    dep.provisioning_state = "Failed"
    dep.pending = None


@operations.finisher("deployment.create")
async def _created(aml: AzureML, op: Operation) -> None:
    dep = aml.store.state.deployments.get(f"{op.endpoint}/{op.deployment}")
    if dep is not None:
        await _provision(aml, op, dep, dep.properties, dep.instance_count)


@operations.finisher("deployment.update")
async def _updated(aml: AzureML, op: Operation) -> None:
    dep = aml.store.state.deployments.get(f"{op.endpoint}/{op.deployment}")
    if dep is None or dep.pending is None:
        return
    pending = dep.pending
    await _provision(aml, op, dep, pending["properties"], int(pending["sku"]["capacity"]))
    if dep.provisioning_state == "Succeeded":
        for field in ("properties", "sku", "location", "tags", "identity", "kind"):
            setattr(dep, field, pending[field])
        dep.pending = None


@operations.finisher("deployment.patch")
async def _patched(aml: AzureML, op: Operation) -> None:
    dep = aml.store.state.deployments.get(f"{op.endpoint}/{op.deployment}")
    if dep is None:
        return
    sku = op.payload.get("sku")
    if isinstance(sku, dict):
        capacity = int(sku.get("capacity") or dep.instance_count)
        problem = _quota_problem(aml, dep, capacity) if capacity > dep.instance_count else None
        if problem:
            operations.fail(op, "OutOfQuota", problem)
            dep.provisioning_state = "Succeeded" if dep.serving else "Failed"
            return
        dep.sku = {**(dep.sku or {}), **sku, "capacity": capacity}
    if "tags" in op.payload:
        dep.tags = op.payload["tags"] or {}
    dep.provisioning_state = "Succeeded" if dep.serving else "Failed"


@operations.finisher("deployment.delete")
async def _deleted(aml: AzureML, op: Operation) -> None:
    aml.store.state.deployments.pop(f"{op.endpoint}/{op.deployment}", None)
    ep = aml.store.state.endpoints.get(op.endpoint)
    if ep is not None and op.deployment is not None:
        ep.traffic.pop(op.deployment, None)
        ep.mirror_traffic.pop(op.deployment, None)
