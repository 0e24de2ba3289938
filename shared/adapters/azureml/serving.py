"""Azure ML as a serving target: each of the workspace's managed online endpoints is an endpoint; a model goes in
service as a NEW deployment of its own (named after the model, so a redelivery finds it) created with no traffic,
smoke-scored directly, then given traffic in the target's steps with a check at each. What served before stays, at
0 %, for `keep_deployments` more deployments: a rollback to it is a traffic switch. A deployment that fails is
deleted (nothing left costing money); the reason its logs give is the reason recorded.

Nothing here waits through ARM's long-running operations (a deployment's create takes minutes): `put_in_service`
starts the deployment's PUT and returns; `verify_once` moves the swap on by one step per look, from what the service
shows (the deployment's provisioningState, then the endpoint's and its traffic), starting the next operation
without following it - so a queued fan-out's `prove` messages carry an Azure ML swap across invocations
(`proves_later`; the steps are `swap.SwapSteps`). `verify` (the inline path) is the same looks in a loop."""

from __future__ import annotations

import hashlib
from typing import Any

from shared import failpoints
from shared.adapters.azureml.arm import Arm
from shared.adapters.azureml.changes import EndpointChanges
from shared.adapters.azureml.errors import AzureMLError
from shared.adapters.azureml.scoring import Scoring
from shared.adapters.azureml.swap import ENDED_BADLY, PROVISIONING, SwapSteps, baseline
from shared.adapters.azureml.training import AzureMLTraining
from shared.errors import AlreadyExists, ServiceError, describe
from shared.ports.serving import Answers, EndpointInfo, Keepalive, ModelRef, Observed, ServingTarget, Verdict
from shared.settings import Target


def deployment_name(model: ModelRef) -> str:
    """A deployment's name for a model: a letter, then 15 hex digits of the model's path (3-32 characters)."""
    return "m" + hashlib.sha256(model.path.encode()).hexdigest()[:15]


class AzureMLServing(ServingTarget):
    label = "azureml"
    proves_later = True

    def __init__(self, target: Target, arm: Arm, training: AzureMLTraining, scoring: Scoring) -> None:
        assert target.azureml is not None
        self.target, self.config, self.arm, self.training, self.scoring = (target, target.azureml, arm, training,
                                                                           scoring)
        self._models: dict[str, str | None] = {}  # model version id -> the path it was registered from
        self._location: str | None = self.config.location
        self.changes = EndpointChanges(arm, self.location)
        self.swap = SwapSteps(self.config, arm, self.changes, scoring, self._deployment_for)

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
            return Verdict(f"the check failed: {exc.describe()}", transient=exc.transient,
                           throttle=exc if exc.throttling else None)
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

    def _deployment_for(self, name: str, model: ModelRef, shown: list[dict[str, Any]] | None = None) -> str:
        """The endpoint's deployment that serves `model` (a model from the app's storage, or a registered version's
        id - an adopted endpoint's first model), else the name a new deployment of it gets. `shown`: the
        deployments as `info` shows them (else they are read)."""
        if shown is None:
            shown = self.info({"name": name}, self._deployments(name)).details["deployments"]
        for d in shown:
            if d["provisioningState"] == "Succeeded" and model.path in (d["model"], d["modelPath"]):
                return str(d["name"])
        return deployment_name(model)

    def baseline(self, name: str, model: ModelRef, before: Observed) -> Observed:
        """`before` without the deployment of `model` (`swap.baseline`): a retried swap's restore never leaves it
        traffic, nor keeps it."""
        new = self._deployment_for(name, model, before.endpoint.details.get("deployments"))
        return Observed(before.endpoint, before.answers, baseline(before.state, new), before.failing)

    def put_in_service(self, name: str, model: ModelRef, keepalive: Keepalive = lambda: None) -> None:
        """Start a deployment of the model with no traffic - or find it made, or on its way (a rollback's traffic
        switch, a redelivery) -, leftovers deleted first; AzureMLError when the service refuses to start it. How
        the creation ends is for `verify_once`'s looks."""
        deployment = self._deployment_for(name, model)
        path = f"/onlineEndpoints/{name}/deployments/{deployment}"
        found = self.arm.find(path, f"get deployment {deployment}")
        state = ((found or {}).get("properties") or {}).get("provisioningState")
        if state == "Succeeded" or state in PROVISIONING:
            return  # made before, or being made: the looks follow it
        if state in ENDED_BADLY:
            self.changes.delete(name, deployment, keepalive)
        elif found is None:
            self.changes.prune(name, keepalive)
        model_id = self.changes.register(model, self.training, self._models)
        body = {"location": self.location(), "sku": {"name": "Default", "capacity": self.config.instance_count},
                "properties": {"endpointComputeType": "Managed", "model": model_id,
                               "instanceType": self.config.instance_type}}
        answer = self.arm.start("PUT", path, f"deploy {deployment} to {name}", body, self._deadline(), keepalive)
        status = answer.headers.get("Azure-AsyncOperation")
        if status:
            self.swap.started[(name, deployment)] = status
        failpoints.reached("azureml-deployment-created")  # its create started (a redelivery finds it by name)

    def kept(self, before: Observed) -> Any:
        return before.state  # the traffic, mirror and deployments before: a restore's target, the steps' base

    def recall(self, name: str, previous: ModelRef | None, answers: Answers | None, kept: Any = None) -> Observed:
        state = kept if isinstance(kept, dict) else self.observe(name, None).state
        return Observed(EndpointInfo(name, previous.path if previous else None, None), answers, state)

    def proof_seconds(self, switch: float, poll: float) -> float:
        return self.swap.proof_seconds(switch, poll)

    def verify_once(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
                    waited: float) -> Verdict | None:
        return self.swap.once(name, model, smoke_row, before, waited)

    def verify(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
               keepalive: Keepalive) -> Verdict:
        return self.swap.until_decided(name, model, smoke_row, before, keepalive)

    def restore(self, name: str, before: Observed, smoke_row: dict[str, str] | None,
                keepalive: Keepalive) -> str | None:
        return self.swap.restore(name, before, smoke_row, keepalive)
