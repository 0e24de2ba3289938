"""Azure ML as a serving target: each of the workspace's managed online endpoints is an endpoint; a model goes in
service as a NEW deployment of its own (named after the model, so a redelivery finds it) created with no traffic,
smoke-scored directly, then given traffic in the target's steps with a check at each. What served before stays, at
0 %, for `keep_deployments` more deployments: a rollback to it is a traffic switch. A deployment that fails is
deleted (nothing left costing money); the reason its logs give is the reason recorded."""

from __future__ import annotations

import hashlib
from typing import Any

from shared import failpoints
from shared.adapters.azureml.arm import Arm
from shared.adapters.azureml.changes import EndpointChanges
from shared.adapters.azureml.errors import AzureMLError
from shared.adapters.azureml.scoring import Scoring
from shared.adapters.azureml.training import AzureMLTraining
from shared.errors import AlreadyExists, ServiceError, describe
from shared.ports.serving import EndpointInfo, Keepalive, ModelRef, Observed, ServingTarget, Verdict
from shared.settings import Target


def deployment_name(model: ModelRef) -> str:
    """A deployment's name for a model: a letter, then 15 hex digits of the model's path (3-32 characters)."""
    return "m" + hashlib.sha256(model.path.encode()).hexdigest()[:15]


class AzureMLServing(ServingTarget):
    label = "azureml"

    def __init__(self, target: Target, arm: Arm, training: AzureMLTraining, scoring: Scoring) -> None:
        assert target.azureml is not None
        self.target, self.config, self.arm, self.training, self.scoring = (target, target.azureml, arm, training,
                                                                           scoring)
        self._models: dict[str, str | None] = {}  # model version id -> the path it was registered from
        self._location: str | None = self.config.location
        self.changes = EndpointChanges(arm, self.location)

    # ---- reading ------------------------------------------------------------------------------------------
    def protected_endpoint(self) -> str | None:
        return None  # every endpoint of the workspace may be retrained

    def _deployments(self, name: str) -> list[dict[str, Any]]:
        return self.changes.deployments(name)

    def _path_of(self, model_id: str | None) -> str | None:
        """The app-storage path a registered model version came from (None for a model from elsewhere)."""
        if not model_id:
            return None
        if model_id not in self._models:
            version = self.arm.find(model_id.split(self.config.workspace_id, 1)[-1], f"get model {model_id}")
            uri = str(((version or {}).get("properties") or {}).get("modelUri") or "")
            self._models[model_id] = self._app_path(uri)
        return self._models[model_id]

    def _app_path(self, uri: str) -> str | None:
        for prefix in (self.training.uri(""), self.training.storage.base):
            if prefix and uri.startswith(prefix):
                return uri[len(prefix):].rstrip("/")
        return None

    def info(self, endpoint: dict[str, Any], deployments: list[dict[str, Any]] | None = None) -> EndpointInfo:
        name, props = endpoint["name"], endpoint.get("properties") or {}
        traffic: dict[str, int] = props.get("traffic") or {}
        deployments = self._deployments(name) if deployments is None else deployments
        shown = [{"name": d["name"], "model": (d.get("properties") or {}).get("model"),
                  "modelPath": self._path_of((d.get("properties") or {}).get("model")),
                  "traffic": traffic.get(d["name"], 0), "provisioningState":
                  (d.get("properties") or {}).get("provisioningState")} for d in deployments]
        live = max(shown, key=lambda d: d["traffic"], default=None)
        serving = live if live is not None and live["traffic"] > 0 else None
        return EndpointInfo(name, serving["modelPath"] or serving["model"] if serving else None, None, {
            "scoringUri": props.get("scoringUri"), "authMode": props.get("authMode"), "traffic": traffic,
            "mirrorTraffic": props.get("mirrorTraffic") or {}, "provisioningState": props.get("provisioningState"),
            "deployments": shown})

    def endpoint(self, name: str) -> EndpointInfo | None:
        found = self.arm.find(f"/onlineEndpoints/{name}", f"get endpoint {name}")
        return self.info(found) if found is not None else None

    def endpoints(self) -> list[EndpointInfo]:
        return [self.info(e) for e in self.arm.pages("/onlineEndpoints", "list endpoints")]

    def endpoint_names(self) -> list[str]:
        return [str(e["name"]) for e in self.arm.pages("/onlineEndpoints", "list endpoints")]

    def check(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None) -> Verdict:
        try:
            found = self.endpoint(name)
            if found is None or found.model_path != model.path:
                return Verdict(f"the endpoint serves {found.model_path if found else None!r} now, not "
                               f"{model.path!r}")
            if smoke_row:
                self.scoring.score(self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}"), smoke_row)
        except AzureMLError as exc:
            return Verdict(f"the check failed: {exc.describe()}", transient=exc.transient)
        return Verdict()

    def health(self) -> dict[str, Any]:
        try:
            workspace = self.arm.get("", "get workspace")
            return {"ok": True, "workspace": workspace.get("name")}
        except ServiceError as exc:
            return {"ok": False, "error": describe(exc)}

    # ---- changing -----------------------------------------------------------------------------------------
    def location(self) -> str:
        if self._location is None:
            self._location = str(self.arm.get("", "get workspace").get("location") or "")
        return self._location

    def _deadline(self) -> float:
        return self.changes.deadline()

    def create_endpoint(self, name: str, options: dict[str, Any]) -> EndpointInfo:
        if self.arm.find(f"/onlineEndpoints/{name}", f"get endpoint {name}") is not None:
            raise AlreadyExists(f"endpoint '{name}' exists already")
        body = {"location": self.location(), "properties": {"authMode": "AADToken", "description":
                                                           options.get("description") or "", "traffic": {}}}
        self.arm.operation("PUT", f"/onlineEndpoints/{name}", f"create endpoint {name}", body, "original-uri",
                           self._deadline())
        found = self.endpoint(name)
        assert found is not None
        return found

    def observe(self, name: str, smoke_row: dict[str, str] | None) -> Observed:
        endpoint = self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}")
        deployments = self._deployments(name)
        props = endpoint.get("properties") or {}
        state = {"traffic": dict(props.get("traffic") or {}), "mirror": dict(props.get("mirrorTraffic") or {}),
                 "deployments": sorted(d["name"] for d in deployments)}
        answers, failing = None, False
        if smoke_row and any((props.get("traffic") or {}).values()):
            try:
                answers = self.scoring.score(endpoint, smoke_row)
            except AzureMLError as exc:
                failing = not exc.transient  # it does not answer, and not for throttling's sake
        return Observed(self.info(endpoint, deployments), answers, state, failing)

    def _deployment_for(self, name: str, model: ModelRef) -> str:
        """The endpoint's deployment that serves `model` (a model from the app's storage, or a registered version's
        id - an adopted endpoint's first model), else the name a new deployment of it gets."""
        for d in self._deployments(name):
            props = d.get("properties") or {}
            if props.get("provisioningState") == "Succeeded" and model.path in (props.get("model"),
                                                                                self._path_of(props.get("model"))):
                return str(d["name"])
        return deployment_name(model)

    def put_in_service(self, name: str, model: ModelRef, keepalive: Keepalive = lambda: None) -> None:
        """A deployment of the model with no traffic, Succeeded (or an AzureMLError saying why not)."""
        deployment = self._deployment_for(name, model)
        path = f"/onlineEndpoints/{name}/deployments/{deployment}"
        found = self.arm.find(path, f"get deployment {deployment}")
        state = ((found or {}).get("properties") or {}).get("provisioningState")
        if state == "Succeeded":
            return  # made before (a rollback's traffic switch, or a redelivery)
        if state == "Failed":
            self.changes.delete(name, deployment, keepalive)
        elif found is None:
            self.changes.prune(name, keepalive)
        model_id = self.changes.register(model, self.training, self._models)
        body = {"location": self.location(), "sku": {"name": "Default", "capacity": self.config.instance_count},
                "properties": {"endpointComputeType": "Managed", "model": model_id,
                               "instanceType": self.config.instance_type}}
        try:
            self.arm.operation("PUT", path, f"deploy {deployment} to {name}", body, "original-uri", self._deadline(),
                               keepalive)
        except AzureMLError as exc:
            if not exc.input_refused:
                raise
            logs = self.changes.logs(name, deployment)
            self.changes.delete(name, deployment, keepalive)  # never leave a failed deployment behind
            raise AzureMLError(exc.operation, exc.status, exc.code, f"{exc.message}" + (f"; its logs end: {logs}"
                                                                                          if logs else ""),
                               input_refused=exc.code not in ("OutOfQuota",)) from None
        failpoints.reached("azureml-deployment-created")

    def verify(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
               keepalive: Keepalive) -> Verdict:
        """Score the new deployment directly, mirror to it (when configured), then give it traffic step by step,
        scoring the endpoint at each; the first failure ends it (the caller restores what served)."""
        new = self._deployment_for(name, model)
        try:
            endpoint = self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}")
            if smoke_row:
                self.scoring.score(endpoint, smoke_row, new)
            old = {d: share for d, share in before.state["traffic"].items() if share and d != new}
            if self.config.mirror_percent and old:
                self.changes.set_traffic(name, before.state["traffic"], {new: self.config.mirror_percent}, keepalive)
            steps = self.config.traffic_steps if old else [100]  # nothing else takes traffic: all of it at once
            for step in steps:
                self.changes.set_traffic(name, _shares(old, new, step), {}, keepalive)
                failpoints.reached("azureml-traffic-step")
                keepalive()
                if smoke_row:
                    self.scoring.score(self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}"), smoke_row)
        except AzureMLError as exc:
            return Verdict(f"the deployment {new} of {model.path} did not serve: {exc.describe()}",
                           transient=exc.transient and not exc.input_refused)
        return Verdict()

    def restore(self, name: str, before: Observed, smoke_row: dict[str, str] | None,
                keepalive: Keepalive) -> str | None:
        """Traffic back as it was (to the deployments that still exist), and deployments made since deleted."""
        try:
            now = {d["name"] for d in self._deployments(name)}
            traffic = {d: share for d, share in before.state["traffic"].items() if d in now}
            if traffic and sum(traffic.values()) != 100:
                return "the deployments that served before are gone: traffic cannot go back"
            self.changes.set_traffic(name, traffic, {d: s for d, s in before.state["mirror"].items() if d in now},
                              keepalive)
            for extra in sorted(now - set(before.state["deployments"])):
                self.changes.delete(name, extra, keepalive)
        except AzureMLError as exc:
            return exc.describe()
        return None


def _shares(old: dict[str, int], new: str, step: int) -> dict[str, int]:
    """Traffic with `step` % on the new deployment and the rest spread over the old ones as they were weighted."""
    if not old or step >= 100:
        return {**{d: 0 for d in old}, new: 100}
    rest, total = 100 - step, sum(old.values())
    shares = {d: rest * s // total for d, s in old.items()}
    first = next(iter(shares))
    shares[first] += rest - sum(shares.values())
    return {**shares, new: step}
