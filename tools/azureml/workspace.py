"""The workspace the routes hang under, the name rules, and `GET` of the workspace itself."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiohttp import web

from tools.azureml import arm
from tools.azureml.config import PROVIDER

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

AZUREML: web.AppKey[AzureML] = web.AppKey("azureml")
BASE = ("/azureml/subscriptions/{sub}/resourceGroups/{rg}/providers/" + PROVIDER + "/workspaces/{ws}")
# how-to-manage-quotas: endpoint and deployment names begin with a letter, are 3-32 characters, letters and
# numbers with single dashes.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*$")
# mfe.json: job names and asset names
_ASSET = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")


def aml_of(request: web.Request) -> AzureML:
    """The stand-in, once the path names its subscription, resource group and workspace."""
    aml = request.app[AZUREML]
    info = request.match_info
    cfg = aml.config
    if info["sub"] != cfg.subscription_id:
        raise arm.ArmError(404, "SubscriptionNotFound", f"The subscription '{info['sub']}' could not be found.")
    if info["rg"].lower() != cfg.resource_group.lower():
        raise arm.ArmError(404, "ResourceGroupNotFound", f"Resource group '{info['rg']}' could not be found.")
    if info["ws"].lower() != cfg.workspace_name.lower():
        raise arm.not_found("workspaces", info["ws"], info["rg"])
    return aml


def check_name(kind: str, name: str) -> None:
    if not (3 <= len(name) <= 32 and _NAME.match(name)):
        raise arm.bad_argument(f"{kind} name '{name}' is invalid: it must begin with a letter, be 3-32 characters "
                               f"long and consist of letters and numbers, with single dashes between them.",
                               target="name")


def check_asset_name(kind: str, name: str) -> None:
    if not _ASSET.match(name):
        raise arm.bad_argument(f"{kind} name '{name}' must match {_ASSET.pattern}.", target="name")


routes = web.RouteTableDef()


@routes.get(BASE, name="azureml.get_workspace")
@arm.management("workspaces")
async def get_workspace(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    cfg = aml.config
    return arm.json_response({
        "id": cfg.workspace_id, "name": cfg.workspace_name, "type": f"{PROVIDER}/workspaces",
        "location": cfg.location, "kind": "Default", "tags": {},
        "identity": {"type": "SystemAssigned", **{k.replace("_id", "Id"): v for k, v in aml.identity_ids.items()}},
        "properties": {"workspaceId": cfg.workspace_guid, "friendlyName": cfg.workspace_name,
                       "provisioningState": "Succeeded", "discoveryUrl": aml.arm_url,
                       "storageAccount": f"/subscriptions/{cfg.subscription_id}/resourceGroups/{cfg.resource_group}"
                                         f"/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"}})
