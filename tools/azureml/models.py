"""Model versions: PUT/GET `.../models/{name}/versions/{version}`, GET `.../models/{name}/versions` (mfe.json
2024-10-01: ModelVersions_CreateOrUpdate answers 200/201 synchronously; a new version raises ModelRegistered)."""

from __future__ import annotations

from aiohttp import web

from tools.azureml import arm, events, resources, storage
from tools.azureml.state import ModelVersion
from tools.azureml.workspace import BASE, aml_of, check_asset_name

routes = web.RouteTableDef()
MODELS = BASE + "/models/{name}/versions"
RTYPE = "workspaces/models/versions"
MODEL_TYPES = ("CustomModel", "MLFlowModel", "TritonModel")
MUTABLE = ("description", "tags", "properties", "isArchived", "stage")


@routes.get(MODELS, name="azureml.list_model_versions")
@arm.management(RTYPE)
async def list_versions(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    name = request.match_info["name"]
    items = [resources.model_version(aml, m) for m in aml.store.state.models.values() if m.name == name]
    return arm.json_response(resources.page(items))


@routes.get(MODELS + "/{version}", name="azureml.get_model_version")
@arm.management(RTYPE)
async def get_version(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    name, version = request.match_info["name"], request.match_info["version"]
    found = aml.store.state.models.get(f"{name}/{version}")
    if found is None:
        raise arm.not_found(f"workspaces/{aml.config.workspace_name}/models/{name}/versions", version,
                            aml.config.resource_group)
    return arm.json_response(resources.model_version(aml, found))


@routes.put(MODELS + "/{version}", name="azureml.put_model_version")
@arm.management(RTYPE)
async def put_version(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    name, version = request.match_info["name"], request.match_info["version"]
    check_asset_name("Model", name)
    check_asset_name("Model version", version)
    body = await arm.json_body(request)
    props = body.get("properties")
    if not isinstance(props, dict):
        raise arm.bad_argument("properties is required.", target="properties")
    uri = props.get("modelUri")
    if not isinstance(uri, str) or not uri:
        raise arm.bad_argument("properties.modelUri is required.", target="properties.modelUri")
    try:
        storage.resolve(aml, uri)
    except storage.UriError as exc:
        raise arm.bad_argument(f"properties.modelUri: {exc}", target="properties.modelUri") from None
    model_type = props.get("modelType") or "CustomModel"
    if model_type not in MODEL_TYPES:
        raise arm.bad_argument(f"properties.modelType must be one of {', '.join(MODEL_TYPES)}.",
                               target="properties.modelType")
    shown = {"description": None, "tags": {}, "properties": {}, "isArchived": False, "isAnonymous": False,
             "flavors": {}, **props, "modelType": model_type}
    key = f"{name}/{version}"
    existing = aml.store.state.models.get(key)
    if existing is not None:
        changed = [k for k, v in shown.items() if k not in MUTABLE and existing.properties.get(k) != v]
        if changed:
            raise arm.ArmError(409, "Conflict", f"Model version {name}:{version} exists; {', '.join(changed)} "
                                                f"cannot be changed (only {', '.join(MUTABLE)}).")
        existing.properties.update({k: shown[k] for k in MUTABLE if k in shown})
        existing.system_data = arm.system_data(request["claims"], {k: v for k, v in existing.system_data.items()
                                                                   if k.startswith("created")})
        aml.store.mark_dirty()
        return arm.json_response(resources.model_version(aml, existing))
    model = ModelVersion(name=name, version=version, properties=shown,
                         system_data=arm.system_data(request["claims"]))
    aml.store.state.models[key] = model
    aml.store.mark_dirty()
    events.publish(aml, "ModelRegistered", f"models/{name}:{version}", {
        "ModelName": name, "ModelVersion": int(version) if version.isdigit() else version,
        "ModelTags": dict(shown.get("tags") or {}), "ModelProperties": dict(shown.get("properties") or {})})
    return arm.json_response(resources.model_version(aml, model), 201)
