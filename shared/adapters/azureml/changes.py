"""The changes an Azure ML serving target makes to one endpoint besides creating deployments: its traffic (a PUT
of the whole endpoint, as the CLI does), deleting deployments, tidying up the ones no traffic reaches, and reading a
failed deployment's logs."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from shared.adapters.azureml.arm import BUSY_PAUSE, Arm
from shared.adapters.azureml.errors import AzureMLError
from shared.adapters.azureml.training import AzureMLTraining
from shared.errors import ServiceError
from shared.ports.serving import Keepalive, ModelRef

LOG_TAIL = 40
BUSY_TRIES = 3  # a look starting a traffic step waits out a busy endpoint this many BUSY_PAUSEs at most


def model_version(model: ModelRef) -> str:
    """A model's registered version: a number derived from its path (the same model, the same version)."""
    return str(int(hashlib.sha256(model.path.encode()).hexdigest()[:12], 16))


class EndpointChanges:
    def __init__(self, arm: Arm, location: Any) -> None:
        self.arm, self.config, self.location = arm, arm.config, location

    def deadline(self) -> float:
        return time.monotonic() + 60 * self.config.deployment_timeout_minutes

    def deployments(self, name: str) -> list[dict[str, Any]]:
        return list(self.arm.pages(f"/onlineEndpoints/{name}/deployments", f"list deployments of {name}"))

    def logs(self, name: str, deployment: str) -> str:
        """The last lines of a deployment's inference server log ("" when they cannot be read)."""
        try:
            got = self.arm.json("POST", f"/onlineEndpoints/{name}/deployments/{deployment}/getLogs",
                                f"logs of {deployment}", {"containerType": "InferenceServer", "tail": LOG_TAIL})
        except ServiceError:
            return ""
        lines = [line for line in str((got or {}).get("content") or "").splitlines() if line.strip()]
        return " | ".join(lines[-3:])[:600]

    def delete(self, name: str, deployment: str, keepalive: Keepalive) -> None:
        self.arm.operation("DELETE", f"/onlineEndpoints/{name}/deployments/{deployment}",
                           f"delete deployment {deployment}", None, "location", self.deadline(), keepalive)

    def prune(self, name: str, keepalive: Keepalive) -> None:
        """Delete the deployments no traffic reaches beyond the `keep_deployments` newest (and any that failed),
        so leftovers never reach the endpoint's deployment limit."""
        endpoint = self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}")
        props = endpoint.get("properties") or {}
        busy = {d for d, share in {**(props.get("traffic") or {}), **(props.get("mirrorTraffic") or {})}.items()
                if share}
        idle = [d for d in self.deployments(name) if d["name"] not in busy]
        idle.sort(key=lambda d: str((d.get("systemData") or {}).get("createdAt") or ""), reverse=True)
        failed = [d for d in idle if (d.get("properties") or {}).get("provisioningState") == "Failed"]
        kept = [d for d in idle if d not in failed][:self.config.keep_deployments]
        for d in idle:
            if d not in kept:
                self.delete(name, d["name"], keepalive)

    def _traffic_body(self, name: str, traffic: dict[str, int], mirror: dict[str, int]) -> dict[str, Any]:
        endpoint = self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}")
        body = {"location": endpoint.get("location") or self.location(), "tags": endpoint.get("tags") or {},
                "properties": {**{k: v for k, v in (endpoint.get("properties") or {}).items() if k in (
                    "authMode", "description", "properties", "publicNetworkAccess", "compute")},
                    "traffic": traffic, "mirrorTraffic": mirror}}
        if endpoint.get("identity"):
            body["identity"] = endpoint["identity"]
        return body

    def set_traffic(self, name: str, traffic: dict[str, int], mirror: dict[str, int], keepalive: Keepalive) -> None:
        """The endpoint's traffic (and mirrored traffic) as given, waited for."""
        self.arm.operation("PUT", f"/onlineEndpoints/{name}", f"traffic of {name}",
                           self._traffic_body(name, traffic, mirror), "original-uri", self.deadline(), keepalive)

    def start_traffic(self, name: str, traffic: dict[str, int], mirror: dict[str, int]) -> bool:
        """Start changing the endpoint's traffic, not waiting for it (the endpoint shows Updating until it is done:
        a later look sees how it went). An endpoint busy with another operation is waited out for a few
        BUSY_PAUSEs only (a look holds one message, and nobody renews the lease meanwhile): still busy -> False,
        "not yet" (the next look tries again)."""
        try:
            self.arm.start("PUT", f"/onlineEndpoints/{name}", f"traffic of {name}",
                           self._traffic_body(name, traffic, mirror), time.monotonic() + BUSY_TRIES * BUSY_PAUSE)
        except AzureMLError as exc:
            if not exc.busy:
                raise
            return False
        return True

    def register(self, model: ModelRef, training: AzureMLTraining, known: dict[str, str | None]) -> str:
        """The model's version id, registered once (from the app's storage, where its job wrote it); a registered
        version's id is used as it is."""
        if model.path.lower().startswith("/subscriptions/"):
            return model.path
        version = model_version(model)
        path = f"/models/{self.config.model_name}/versions/{version}"
        found = self.arm.find(path, f"get model {self.config.model_name}:{version}")
        if found is None:
            body = {"properties": {"modelUri": training.uri(model.path, folder=True), "modelType": "CustomModel",
                                   "jobName": model.job_id, "tags": {"retrain.path": model.path}}}
            found = self.arm.json("PUT", path, f"register model {self.config.model_name}:{version}", body)
        model_id = str(found.get("id") or f"{self.config.workspace_id}{path}")
        known[model_id] = model.path
        return model_id
