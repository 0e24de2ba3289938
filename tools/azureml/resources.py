"""The ARM representations of the stand-in's resources (shapes from mfe.json 2024-10-01 and its examples)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tools.azureml.config import PROVIDER
from tools.azureml.state import Deployment, Endpoint, Job, ModelVersion

if TYPE_CHECKING:
    from tools.azureml.service import AzureML


def _tracked(aml: AzureML, rid: str, name: str, rtype: str, rec: Endpoint | Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rid, "name": name, "type": f"{PROVIDER}/{rtype}", "location": rec.location,
                           "tags": rec.tags, "systemData": rec.system_data}
    if rec.kind is not None:
        out["kind"] = rec.kind
    if rec.sku is not None:
        out["sku"] = rec.sku
    if rec.identity is not None:
        ident = dict(rec.identity)
        if ident.get("type", "None") != "None":
            ident.setdefault("principalId", aml.identity_ids["principal_id"])
            ident.setdefault("tenantId", aml.identity_ids["tenant_id"])
        out["identity"] = ident
    return out


def endpoint(aml: AzureML, ep: Endpoint) -> dict[str, Any]:
    out = _tracked(aml, aml.resource_id("onlineEndpoints", ep.name), ep.name, "workspaces/onlineEndpoints", ep)
    props: dict[str, Any] = {"authMode": ep.auth_mode, "properties": ep.properties,
                             "scoringUri": aml.scoring_uri(ep.name), "swaggerUri": aml.swagger_uri(ep.name),
                             "provisioningState": ep.provisioning_state, "traffic": ep.traffic,
                             "mirrorTraffic": ep.mirror_traffic, "publicNetworkAccess": ep.public_network_access}
    if ep.description is not None:
        props["description"] = ep.description
    out["properties"] = props
    return out


def deployment(aml: AzureML, dep: Deployment) -> dict[str, Any]:
    rid = aml.resource_id("onlineEndpoints", dep.endpoint, "deployments", dep.name)
    out = _tracked(aml, rid, dep.name, "workspaces/onlineEndpoints/deployments", dep)
    props = dict(dep.properties)
    props.setdefault("endpointComputeType", "Managed")
    props.setdefault("instanceType", "Standard_F4s_v2")
    props.setdefault("scaleSettings", {"scaleType": "Default"})
    props.setdefault("appInsightsEnabled", False)
    props.setdefault("egressPublicNetworkAccess", "Enabled")
    props["provisioningState"] = dep.provisioning_state
    out["properties"] = props
    return out


def model_version(aml: AzureML, mv: ModelVersion) -> dict[str, Any]:
    return {"id": aml.resource_id("models", mv.name, "versions", mv.version), "name": mv.version,
            "type": f"{PROVIDER}/workspaces/models/versions", "properties": mv.properties,
            "systemData": mv.system_data}


def job(aml: AzureML, rec: Job) -> dict[str, Any]:
    props = dict(rec.properties)
    props["status"] = rec.status
    return {"id": aml.resource_id("jobs", rec.name), "name": rec.name,
            "type": f"{PROVIDER}/workspaces/jobs", "properties": props, "systemData": rec.system_data}


def page(items: list[dict[str, Any]]) -> dict[str, Any]:
    """An ArmPaginatedResult: everything on one page (no nextLink)."""
    return {"value": items}
