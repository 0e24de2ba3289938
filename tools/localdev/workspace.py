"""What a client of the (stand-in) Azure Machine Learning workspace sees: tokens from the local managed-identity
endpoint, an online endpoint's traffic and deployments through ARM (a token for https://management.azure.com/),
the model version each deployment serves, and scores through the endpoint's scoringUri (an Entra token for
https://ml.azure.com, MLflow's tabular payload). Used by the demo, the `python -m tools.localdev score` helper and
the end-to-end tests; nothing here is the app's code."""

from __future__ import annotations

import time
from typing import Any

import requests

MANAGEMENT = "https://management.azure.com/"
SCORING = "https://ml.azure.com"
NO_MODEL = "no model yet"


class WorkspaceCallFailed(Exception):
    pass


def token(manifest: dict[str, Any], resource: str, http: Any = requests) -> str:
    """An Entra token for `resource` from the local identity endpoint (what ManagedIdentityCredential asks)."""
    identity = manifest["identity"]
    resp = http.get(identity["endpoint"], headers={"X-IDENTITY-HEADER": identity["header"]}, timeout=30,
                    params={"resource": resource, "api-version": "2019-08-01", "client_id": identity["client_id"]})
    if resp.status_code != 200:
        raise WorkspaceCallFailed(f"identity endpoint: HTTP {resp.status_code} {resp.text[:200]}")
    return str(resp.json()["access_token"])


class Workspace:
    """The workspace of an emulator manifest, through a requests session that trusts the stack's CA."""

    def __init__(self, manifest: dict[str, Any], http: Any) -> None:
        self.m, self.aml, self.http = manifest, manifest["azureml"], http
        self.base = f"{self.aml['arm_url']}{self.aml['workspace_id']}"
        self._models: dict[str, str] = {}
        self._tokens: dict[str, tuple[float, str]] = {}

    def token(self, resource: str) -> str:
        """A token for `resource`, asked for again after five minutes (they live an hour)."""
        at, value = self._tokens.get(resource, (0.0, ""))
        if time.monotonic() - at > 300:
            value = token(self.m, resource, self.http)
            self._tokens[resource] = (time.monotonic(), value)
        return value

    def arm(self, path: str) -> dict[str, Any] | None:
        """GET an ARM resource under the workspace (None when it does not exist)."""
        resp = self.http.get(f"{self.base}{path}", params={"api-version": self.aml["api_version"]}, timeout=30,
                             headers={"Authorization": f"Bearer {self.token(MANAGEMENT)}"})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise WorkspaceCallFailed(f"GET {path}: HTTP {resp.status_code} {resp.text[:200]}")
        return dict(resp.json())

    def endpoint(self, name: str) -> dict[str, Any]:
        found = self.arm(f"/onlineEndpoints/{name}")
        if found is None:
            raise WorkspaceCallFailed(f"online endpoint {name} does not exist")
        return found

    def traffic(self, name: str) -> dict[str, int]:
        return {d: int(s) for d, s in (self.endpoint(name)["properties"].get("traffic") or {}).items()}

    def deployments(self, name: str) -> dict[str, dict[str, Any]]:
        """deployment name -> {"state", "model" (the app storage path its model version came from)}."""
        found = self.arm(f"/onlineEndpoints/{name}/deployments") or {"value": []}
        return {d["name"]: {"state": d["properties"].get("provisioningState"),
                            "model": self.model_path(str(d["properties"].get("model") or ""))}
                for d in found["value"]}

    def model_path(self, model_id: str) -> str:
        """What a model version was registered from (its `retrain.path` tag, set by the app), else its id."""
        if model_id and model_id not in self._models:
            version = self.arm(model_id.split(self.aml["workspace_id"], 1)[-1]) or {}
            tags = (version.get("properties") or {}).get("tags") or {}
            self._models[model_id] = str(tags.get("retrain.path") or model_id)
        return self._models.get(model_id, model_id)

    def serving(self, name: str) -> str:
        """The model path of the deployment with the most traffic (NO_MODEL when no deployment has any)."""
        traffic = {d: s for d, s in self.traffic(name).items() if s > 0}
        if not traffic:
            return NO_MODEL
        live = max(traffic, key=lambda d: traffic[d])
        return str(self.deployments(name)[live]["model"])

    def score(self, name: str, rows: list[dict[str, Any]], deployment: str | None = None) -> tuple[list[float], str]:
        """P(positive class) per row through the endpoint's scoringUri, and the deployment that answered."""
        uri = self.endpoint(name)["properties"]["scoringUri"]
        headers = {"Authorization": f"Bearer {self.token(SCORING)}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        names = list(rows[0])
        body = {"input_data": {"columns": names, "index": list(range(len(rows))),
                               "data": [[str(r[n]) for n in names] for r in rows]}}
        resp = self.http.post(uri, json=body, headers=headers, timeout=30)
        if resp.status_code == 404:
            raise WorkspaceCallFailed(f"{name}: {NO_MODEL} (scoring answered 404: {resp.text[:200]})")
        if resp.status_code != 200:
            raise WorkspaceCallFailed(f"scoring through {name}: HTTP {resp.status_code} {resp.text[:300]}")
        return [float(r["probability"]) for r in resp.json()], resp.headers.get("azureml-model-deployment", "?")

    def events(self) -> list[dict[str, Any]]:
        """The workspace's own events (Event Grid schema) as the stand-in's `azureml` topic received them."""
        resp = self.http.get(f"{self.m['admin_url']}/eventgrid/topics/{self.aml['events_topic']}/events", timeout=30)
        resp.raise_for_status()
        return [item["event"] for item in resp.json()]


def session(ca_bundle: str | None) -> requests.Session:
    """A session that trusts the stack's CA (and not a REQUESTS_CA_BUNDLE from the environment)."""
    http = requests.Session()
    if ca_bundle:
        http.verify, http.trust_env = ca_bundle, False
    return http
