"""The changes an Azure ML serving target makes to one endpoint besides creating deployments: its traffic (a PUT
of the whole endpoint, as the CLI does), deleting deployments, tidying up the ones no traffic reaches, and reading a
failed deployment's logs."""

from __future__ import annotations

import time
from typing import Any

from shared.adapters.azureml.arm import Arm
from shared.errors import ServiceError
from shared.ports.serving import Keepalive

LOG_TAIL = 40


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

    def set_traffic(self, name: str, traffic: dict[str, int], mirror: dict[str, int], keepalive: Keepalive) -> None:
        endpoint = self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}")
        body = {"location": endpoint.get("location") or self.location(), "tags": endpoint.get("tags") or {},
                "properties": {**{k: v for k, v in (endpoint.get("properties") or {}).items() if k in (
                    "authMode", "description", "properties", "publicNetworkAccess", "compute")},
                    "traffic": traffic, "mirrorTraffic": mirror}}
        if endpoint.get("identity"):
            body["identity"] = endpoint["identity"]
        self.arm.operation("PUT", f"/onlineEndpoints/{name}", f"traffic of {name}", body, "original-uri",
                           self.deadline(), keepalive)
