"""A small ARM client for the contract tests, written from docs/reference/azureml-rest.md and the manifest alone
(no code of the stand-in): an Entra token from the managed-identity endpoint, requests under the manifest's
`arm_url`, and long-running operations followed the ARM way (Azure-AsyncOperation polled to a terminal state)."""

from __future__ import annotations

import time
from typing import Any

import requests

MANAGEMENT = "https://management.azure.com/"


class Arm:
    def __init__(self, manifest: dict[str, Any], verify: Any = True) -> None:
        self.m = manifest
        self.aml = manifest["azureml"]
        self.http = requests.Session()
        self.http.verify = verify
        self.http.trust_env = False  # loopback only; the CA given wins over REQUESTS_CA_BUNDLE
        self.version = self.aml["api_version"]
        self._token: str | None = None

    # ---- identity
    def token(self, resource: str = MANAGEMENT) -> str:
        ident = self.m["identity"]
        r = self.http.get(ident["endpoint"], params={"resource": resource, "api-version": "2019-08-01"},
                          headers={"X-IDENTITY-HEADER": ident["header"]}, timeout=10)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def headers(self, token: str | None = None) -> dict[str, str]:
        if token is None:
            if self._token is None:
                self._token = self.token()
            token = self._token
        return {"Authorization": f"Bearer {token}"}

    # ---- requests
    def url(self, path: str = "") -> str:
        return f"{self.aml['arm_url']}{self.aml['workspace_id']}{path}"

    def call(self, method: str, path: str = "", body: Any = None, token: str | None = None,
             version: str | None = "", **kw: Any) -> requests.Response:
        params = {} if version is None else {"api-version": version or self.version}
        headers = {**self.headers(token), **kw.pop("headers", {})}
        return self.http.request(method, self.url(path), params=params, json=body, headers=headers, timeout=30,
                                 **kw)

    def get(self, path: str) -> dict[str, Any]:
        r = self.call("GET", path)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def poll(self, resp: requests.Response, timeout: float = 30.0) -> dict[str, Any]:
        """Follow Azure-AsyncOperation until the operation is terminal; return the last status resource."""
        url = resp.headers["Azure-AsyncOperation"]
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(url, headers=self.headers(), timeout=10)
            assert r.status_code == 200, r.text
            status = r.json()
            if status["status"] in ("Succeeded", "Failed", "Canceled"):
                return dict(status)
            assert time.monotonic() < deadline, f"operation still {status['status']}"
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 0.1))

    # ---- resources
    def put_endpoint(self, name: str, auth: str = "Key", **props: Any) -> requests.Response:
        return self.call("PUT", f"/onlineEndpoints/{name}",
                         {"location": self.aml["location"], "properties": {"authMode": auth, **props}})

    def create_endpoint(self, name: str, auth: str = "Key") -> dict[str, Any]:
        r = self.put_endpoint(name, auth)
        assert r.status_code == 201, r.text
        assert self.poll(r)["status"] == "Succeeded"
        return self.get(f"/onlineEndpoints/{name}")

    def model_id(self, name: str, version: str) -> str:
        return f"{self.aml['workspace_id']}/models/{name}/versions/{version}"

    def put_deployment(self, endpoint: str, name: str, model: str, capacity: int = 1) -> requests.Response:
        return self.call("PUT", f"/onlineEndpoints/{endpoint}/deployments/{name}", {
            "location": self.aml["location"], "sku": {"name": "Default", "capacity": capacity},
            "properties": {"endpointComputeType": "Managed", "model": model, "instanceType": "Standard_DS3_v2"}})

    def create_deployment(self, endpoint: str, name: str, model: str, capacity: int = 1) -> dict[str, Any]:
        r = self.put_deployment(endpoint, name, model, capacity)
        assert r.status_code == 201, r.text
        status = self.poll(r)
        assert status["status"] == "Succeeded", status
        return self.get(f"/onlineEndpoints/{endpoint}/deployments/{name}")

    def set_traffic(self, endpoint: str, traffic: dict[str, int], mirror: dict[str, int] | None = None,
                    auth: str = "Key") -> requests.Response:
        return self.put_endpoint(endpoint, auth, traffic=traffic, mirrorTraffic=mirror or {})

    def register_model(self, name: str, version: str, uri: str) -> requests.Response:
        return self.call("PUT", f"/models/{name}/versions/{version}",
                         {"properties": {"modelUri": uri, "modelType": "CustomModel", "tags": {"t": "1"}}})

    def submit_job(self, name: str, data_uri: str, **literals: str) -> requests.Response:
        inputs: dict[str, Any] = {"training_data": {"jobInputType": "uri_file", "uri": data_uri}}
        inputs.update({k: {"jobInputType": "literal", "value": v} for k, v in literals.items()})
        return self.call("PUT", f"/jobs/{name}", {"properties": {
            "jobType": "Command", "command": "python train.py --data ${{inputs.training_data}}",
            "environmentId": "azureml://registries/azureml/environments/sklearn-1.5/labels/latest",
            "experimentName": "retrain", "inputs": inputs,
            "outputs": {"model": {"jobOutputType": "custom_model"}, "evaluation": {"jobOutputType": "uri_folder"}}}})

    def wait_job(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/jobs/{name}")
            if job["properties"]["status"] in ("Completed", "Failed", "Canceled"):
                return job
            assert time.monotonic() < deadline, f"job {name} still {job['properties']['status']}"
            time.sleep(0.05)

    # ---- scoring
    def score(self, endpoint: dict[str, Any], key: str, body: Any, deployment: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        return self.http.post(endpoint["properties"]["scoringUri"], json=body, headers=headers, timeout=30)

    def keys(self, endpoint: str) -> dict[str, str]:
        r = self.call("POST", f"/onlineEndpoints/{endpoint}/listKeys")
        assert r.status_code == 200, r.text
        return dict(r.json())


def error_code(resp: requests.Response) -> str:
    return str(resp.json()["error"]["code"])
