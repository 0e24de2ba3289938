"""App settings for a local stack: the function app's settings derived from an emulator manifest."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.localdev.azurite import Azurite
    from tools.localdev.tls import LocalTls


def settings_from_manifest(manifest: dict[str, Any], storage_connection_string: str | None = None,
                           **overrides: str) -> dict[str, str]:
    """Settings (as environment variables) that point the app at this emulator and storage account."""
    service_url = (f"{manifest['management_url']}/workspaces/{manifest['workspace_id']}/webservices/"
                   f"{manifest['predictive_service']['id']}")
    values = {
        "AzureWebJobsStorage": storage_connection_string or manifest["storage"]["connection_string"],
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "RETRAIN_BES_URL": manifest["training_service"]["api_location"],
        "RETRAIN_BES_KEY": manifest["training_service"]["api_key"],
        "RETRAIN_MANAGEMENT_URL": service_url,
        "RETRAIN_MANAGEMENT_KEY": manifest["workspace_token"],
        "RETRAIN_RESOURCE_NAME": manifest["predictive_service"]["resource_name"],
        "RETRAIN_ENDPOINTS": "*",
        "RETRAIN_TENANT_ROUTING": "true",
        "RETRAIN_EVENTGRID_ENDPOINT": manifest["eventgrid"]["topic_endpoint"],
        "RETRAIN_EVENTGRID_KEY": manifest["eventgrid"]["topic_key"],
        "RETRAIN_GATE_METRIC": "AUC",
        "RETRAIN_GATE_MINIMUM": "0.7",
        "RETRAIN_SAS_MINUTES": "60",
    }
    values.update(overrides)
    return values


def identity_settings(values: dict[str, str], azurite: Azurite, manifest: dict[str, Any],
                      tls: LocalTls) -> dict[str, str]:
    """The app's settings in identity mode, as in Azure: storage by service URI and a user-assigned managed
    identity (no connection string), the topic without a key; the platform's identity endpoint (in Azure the host
    sets IDENTITY_ENDPOINT and IDENTITY_HEADER itself) and the local CA to trust."""
    identity = manifest["identity"]
    out = {k: v for k, v in values.items() if k not in ("AzureWebJobsStorage", "RETRAIN_EVENTGRID_KEY")}
    out.update({
        "AzureWebJobsStorage__blobServiceUri": azurite.service_uri("blob"),
        "AzureWebJobsStorage__queueServiceUri": azurite.service_uri("queue"),
        "AzureWebJobsStorage__tableServiceUri": azurite.service_uri("table"),
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": identity["client_id"],
        "AZURE_CLIENT_ID": identity["client_id"],
        "IDENTITY_ENDPOINT": identity["endpoint"],
        "IDENTITY_HEADER": identity["header"],
        **tls.environ(),
    })
    return out


def local_settings_json(values: dict[str, str]) -> str:
    return json.dumps({"IsEncrypted": False, "Values": values}, indent=2)


AZUREML_JOB = {"command": "python train.py --data ${{inputs.training_data}} --model ${{outputs.model}} "
                          "--evaluation ${{outputs.evaluation}}",
               "environmentId": "azureml:retrain-sklearn:1", "computeId": "cpu-cluster"}


def azureml_settings(values: dict[str, str], manifest: dict[str, Any], ca_file: str,
                     **target: Any) -> dict[str, str]:
    """The app's settings with the Azure ML stand-in as its one target (kind azureml), reached with the local managed
    identity over HTTPS (the stand-in's CA trusted), as the app reaches a real workspace."""

    aml, identity = manifest["azureml"], manifest["identity"]
    config = {"workspace_id": aml["workspace_id"], "arm_url": aml["arm_url"], "api_version": aml["api_version"],
              "location": aml.get("location"), "job": AZUREML_JOB, "model_name": "retrained-census",
              "deployment_timeout_minutes": 2, **target}
    return {**values, "RETRAIN_TARGETS": json.dumps([{"name": "default", "kind": "azureml", "azureml": config,
                                                      "endpoints": values.get("RETRAIN_ENDPOINTS") or ""}]),
            "IDENTITY_ENDPOINT": identity["endpoint"], "IDENTITY_HEADER": identity["header"],
            "AZURE_CLIENT_ID": identity["client_id"], "REQUESTS_CA_BUNDLE": ca_file}
