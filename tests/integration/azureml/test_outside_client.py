"""The outside client (azure-core ARM pipeline + ARMPolling, azure-identity's managed identity credential) creates
an endpoint and two deployments, shifts traffic and scores - against the stand-in, unchanged."""

from __future__ import annotations

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from tests.integration.azureml.arm import Arm
from tests.integration.azureml.conftest import census_rows, unique
from tests.integration.azureml.outside_client import OnlineEndpoints


@pytest.fixture
def client(arm: Arm, monkeypatch: pytest.MonkeyPatch) -> OnlineEndpoints:
    ident = arm.m["identity"]
    # the App Service managed-identity protocol, as the platform sets it; TLS trusts the local CA
    monkeypatch.setenv("IDENTITY_ENDPOINT", ident["endpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", ident["header"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(arm.http.verify))
    monkeypatch.delenv("MSI_ENDPOINT", raising=False)
    credential = ManagedIdentityCredential(client_id=ident["client_id"])
    aml = arm.aml
    return OnlineEndpoints(aml["arm_url"], aml["workspace_id"], aml["api_version"], credential)


def test_generic_arm_client_deploys_shifts_traffic_and_scores(client: OnlineEndpoints, arm: Arm, trained: dict):
    location = arm.aml["location"]
    version = unique("v")
    model = client.register_model("outside", version, f"azureml://jobs/{trained['job']}/outputs/model")
    name = unique("out")
    endpoint = client.begin_create_endpoint(name, location).result(timeout=30)
    assert endpoint["properties"]["provisioningState"] == "Succeeded"
    for deployment in ("blue", "green"):
        dep = client.begin_create_deployment(name, deployment, location, model["id"]).result(timeout=30)
        assert dep["properties"]["provisioningState"] == "Succeeded"
    key = client.list_keys(name)["primaryKey"]
    scoring = endpoint["properties"]["scoringUri"]

    def served_by(traffic: dict[str, int], deployment: str | None = None) -> set[str]:
        updated = client.begin_create_endpoint(name, location, traffic).result(timeout=30)
        assert updated["properties"]["traffic"] == traffic
        headers = {"Authorization": f"Bearer {key}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        seen = set()
        for _ in range(10):
            r = requests.post(scoring, json=census_rows(2), headers=headers, timeout=10, verify=arm.http.verify)
            assert r.status_code == 200, r.text
            assert len(r.json()) == 2
            seen.add(r.headers["azureml-model-deployment"])
        return seen

    assert served_by({"blue": 100, "green": 0}) == {"blue"}
    assert served_by({"blue": 100, "green": 0}, deployment="green") == {"green"}  # tested before it gets traffic
    assert served_by({"blue": 0, "green": 100}) == {"green"}
    assert client.begin_delete_deployment(name, "blue").result(timeout=30) is None
    assert [d["name"] for d in client.get(f"/onlineEndpoints/{name}/deployments")["value"]] == ["green"]
