"""The per-endpoint deployment limit and the instance quota (an emulator with small limits), deployment faults
(stuck in Creating until a deadline, failing after N seconds), and the emulator's request faults on these routes."""

from __future__ import annotations

import time

import pytest
import requests

from tests.integration.azureml.arm import Arm, error_code
from tests.integration.azureml.conftest import census_csv_url, unique


@pytest.fixture(scope="module")
def model(limited: Arm) -> str:
    name = unique("job")
    assert limited.submit_job(name, census_csv_url(limited)).status_code == 201
    assert limited.wait_job(name)["properties"]["status"] == "Completed"
    assert limited.register_model("m", name, f"azureml://jobs/{name}/outputs/model").status_code == 201
    return limited.model_id("m", name)


def admin(arm: Arm, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{arm.m['admin_url']}{path}", json=body, timeout=10, verify=arm.http.verify)


def remove(arm: Arm, endpoint: str) -> None:
    assert arm.poll(arm.call("DELETE", f"/onlineEndpoints/{endpoint}"))["status"] == "Succeeded"


def test_deployments_per_endpoint_and_instance_quota(limited: Arm, model: str):
    ep = unique("ep")
    limited.create_endpoint(ep)
    limited.create_deployment(ep, "one", model)
    limited.create_deployment(ep, "two", model)
    r = limited.put_deployment(ep, "three", model)
    assert r.status_code == 400 and error_code(r) == "BadArgument" and "2 deployments" in r.json()["error"]["message"]
    # quota 6: two deployments of 1 instance hold 2 + 20 % each (4); 2 more instances need 3
    other = unique("ep")
    limited.create_endpoint(other)
    status = limited.poll(limited.put_deployment(other, "big", model, capacity=2))
    assert status["status"] == "Failed" and status["error"]["code"] == "OutOfQuota"
    assert "Current usage/limit: 4/6" in status["error"]["message"]
    assert limited.get(f"/onlineEndpoints/{other}/deployments/big")["properties"]["provisioningState"] == "Failed"
    remove(limited, ep)
    assert limited.poll(limited.put_deployment(other, "big", model, capacity=2))["status"] == "Succeeded"
    remove(limited, other)


def test_a_deployment_stuck_in_creating_until_a_deadline(limited: Arm, model: str):
    rule = admin(limited, "POST", "/azureml/deployment-faults",
                 {"deployment": "slow*", "stuck_seconds": 3.0, "count": 1}).json()[0]
    ep = unique("ep")
    limited.create_endpoint(ep)
    started = time.monotonic()
    r = limited.put_deployment(ep, "slow", model)
    time.sleep(0.9)  # past the configured creation time (0.4 s)
    assert limited.get(f"/onlineEndpoints/{ep}/deployments/slow")["properties"]["provisioningState"] == "Creating"
    assert limited.poll(r)["status"] == "Succeeded" and time.monotonic() - started >= 3.0
    assert rule["id"] not in [f["id"] for f in admin(limited, "GET", "/azureml/deployment-faults").json()]
    remove(limited, ep)


def test_a_deployment_failing_after_n_seconds_and_the_flag_form(limited: Arm, model: str):
    admin(limited, "POST", "/azureml/deployment-faults",
          {"deployment": "doomed", "fail_after_seconds": 0.6, "message": "OOM killed", "count": 1})
    ep = unique("ep")
    limited.create_endpoint(ep)
    started = time.monotonic()
    status = limited.poll(limited.put_deployment(ep, "doomed", model))
    assert status["status"] == "Failed" and status["error"]["code"] == "ResourceNotReady"
    assert time.monotonic() - started >= 0.6
    logs = limited.call("POST", f"/onlineEndpoints/{ep}/deployments/doomed/getLogs", {}).json()["content"]
    assert "OOM killed" in logs
    # started with --azureml-deployment-fault deployment=flagged*,fail_after=0.2,code=ImageBuildFailure
    status = limited.poll(limited.put_deployment(ep, "flagged", model))
    assert status["status"] == "Failed" and status["error"]["code"] == "ImageBuildFailure"
    bad = admin(limited, "POST", "/azureml/deployment-faults", {"deployment": "x"})
    assert bad.status_code == 400
    remove(limited, ep)


def test_request_faults_answer_in_arms_envelope_and_apply_skip_latency_and_drop(limited: Arm):
    def fault(**rule):
        assert admin(limited, "POST", "/faults", rule).status_code == 201

    try:
        fault(route="azureml.list_endpoints", status=503, retry_after=2, count=1, skip=1)
        assert limited.call("GET", "/onlineEndpoints").status_code == 200  # skipped
        r = limited.call("GET", "/onlineEndpoints")
        assert r.status_code == 503 and r.headers["Retry-After"] == "2" and error_code(r) == "ServiceUnavailable"
        assert set(r.json()["error"]) >= {"code", "message", "details"}
        assert limited.call("GET", "/onlineEndpoints").status_code == 200
        fault(route="azureml.put_*", status=429, count=1)
        r = limited.put_endpoint(unique("ep"))
        assert r.status_code == 429 and error_code(r) == "TooManyRequests"
        fault(route="azureml.get_workspace", latency_ms=300, count=1)
        started = time.monotonic()
        assert limited.call("GET", "").status_code == 200 and time.monotonic() - started >= 0.3
        fault(route="azureml.operation_status", drop=True, count=1)
        r = limited.put_endpoint(unique("ep"))
        with pytest.raises(requests.ConnectionError):
            limited.http.get(r.headers["Azure-AsyncOperation"], headers=limited.headers(), timeout=10)
        assert limited.poll(r)["status"] == "Succeeded"
    finally:
        admin(limited, "DELETE", "/faults")
