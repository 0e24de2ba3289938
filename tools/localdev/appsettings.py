"""App settings for a local stack: the function app's settings derived from an emulator manifest."""

from __future__ import annotations

import json
from typing import Any


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


def local_settings_json(values: dict[str, str]) -> str:
    return json.dumps({"IsEncrypted": False, "Values": values}, indent=2)
