"""Online endpoints: every route's shape and every LRO step, the auth and api-version refusals (ARM envelope)."""

from __future__ import annotations

import time

import requests

from tests.integration.azureml.arm import MANAGEMENT, Arm, error_code
from tests.integration.azureml.conftest import unique


def test_manifest_names_the_workspace_and_the_workspace_answers(arm: Arm):
    aml = arm.aml
    assert aml["api_version"] == "2024-10-01"
    assert aml["workspace_id"].startswith(f"/subscriptions/{aml['subscription_id']}/resourceGroups/")
    assert aml["workspace_id"].endswith("/providers/Microsoft.MachineLearningServices/workspaces/"
                                        + aml["workspace_name"])
    ws = arm.get("")
    assert ws["id"] == aml["workspace_id"] and ws["type"] == "Microsoft.MachineLearningServices/workspaces"
    assert ws["properties"]["provisioningState"] == "Succeeded"


def test_management_routes_need_an_entra_token_for_arm(arm: Arm):
    r = requests.get(arm.url("/onlineEndpoints"), params={"api-version": arm.version}, timeout=10,
                     verify=arm.http.verify)
    assert r.status_code == 401 and error_code(r) == "AuthenticationFailed"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(r.json()["error"]) >= {"code", "message", "details"}
    r = arm.call("GET", "/onlineEndpoints", token="not-a-jwt")
    assert r.status_code == 401 and error_code(r) == "InvalidAuthenticationToken"
    storage_token = arm.token("https://storage.azure.com/")
    r = arm.call("GET", "/onlineEndpoints", token=storage_token)
    assert r.status_code == 401 and error_code(r) == "InvalidAuthenticationTokenAudience"
    assert arm.call("GET", "/onlineEndpoints", token=arm.token(MANAGEMENT)).status_code == 200


def test_api_version_is_required_and_must_be_the_supported_one(arm: Arm):
    r = arm.call("GET", "/onlineEndpoints", version=None)
    assert r.status_code == 400 and error_code(r) == "MissingApiVersionParameter"
    r = arm.call("GET", "/onlineEndpoints", version="2021-03-01-preview")
    assert r.status_code == 400 and error_code(r) == "NoRegisteredProviderFound"
    assert "2024-10-01" in r.json()["error"]["message"]


def test_unknown_workspace_resource_and_route_answer_404_in_arms_envelope(arm: Arm):
    r = arm.call("GET", "/onlineEndpoints/nothing-here")
    assert r.status_code == 404 and error_code(r) == "ResourceNotFound"
    r = arm.http.get(arm.url("").replace(arm.aml["workspace_name"], "otherws") + "/onlineEndpoints",
                     params={"api-version": arm.version}, headers=arm.headers(), timeout=10)
    assert r.status_code == 404 and error_code(r) == "ResourceNotFound"
    r = arm.call("GET", "/notAResourceType")
    assert r.status_code == 404 and "error" in r.json()


def test_create_is_a_long_running_operation_from_201_to_succeeded(arm: Arm):
    name = unique("ep")
    r = arm.put_endpoint(name, description="first", traffic={})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == name and body["properties"]["provisioningState"] == "Creating"
    assert body["id"] == f"{arm.aml['workspace_id']}/onlineEndpoints/{name}"
    assert body["type"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    assert body["properties"]["authMode"] == "Key" and body["properties"]["scoringUri"].endswith(f"/{name}/score")
    assert body["systemData"]["createdByType"] == "Application"
    op_url = r.headers["Azure-AsyncOperation"]
    assert "/providers/Microsoft.MachineLearningServices/locations/" in op_url and "api-version=" in op_url
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["x-ms-async-operation-timeout"]
    first = arm.http.get(op_url, headers=arm.headers(), timeout=10).json()
    assert first["status"] == "InProgress" and first["name"] and first["startTime"]
    assert arm.get(f"/onlineEndpoints/{name}")["properties"]["provisioningState"] == "Creating"
    final = arm.poll(r)
    assert final["status"] == "Succeeded" and final["endTime"] and final["percentComplete"] == 100.0
    got = arm.get(f"/onlineEndpoints/{name}")
    assert got["properties"]["provisioningState"] == "Succeeded" and got["properties"]["description"] == "first"
    listed = arm.get("/onlineEndpoints")["value"]
    assert name in [e["name"] for e in listed]
    assert requests.get(op_url, timeout=10, verify=arm.http.verify).status_code == 401  # operations need auth too


def test_a_second_mutating_operation_while_one_runs_is_409(arm: Arm):
    name = unique("ep")
    r = arm.put_endpoint(name)
    assert r.status_code == 201
    again = arm.put_endpoint(name, description="too soon")
    assert again.status_code == 409 and error_code(again) == "Conflict"
    assert arm.call("DELETE", f"/onlineEndpoints/{name}").status_code == 409
    assert arm.poll(r)["status"] == "Succeeded"
    assert arm.put_endpoint(name, description="now").status_code == 200


def test_patch_answers_202_and_location_gives_the_resource_when_done(arm: Arm):
    name = unique("ep")
    arm.create_endpoint(name)
    r = arm.call("PATCH", f"/onlineEndpoints/{name}", {"tags": {"team": "ml"}})
    assert r.status_code == 202 and r.text == ""
    location = r.headers["Location"]
    assert "mfeOperationResults" in location and r.headers["Azure-AsyncOperation"] and r.headers["Retry-After"]
    first = arm.http.get(location, headers=arm.headers(), timeout=10)
    assert first.status_code == 202 and first.headers["Location"] == location
    deadline = time.monotonic() + 10
    while (res := arm.http.get(location, headers=arm.headers(), timeout=10)).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert res.status_code == 200 and res.json()["tags"] == {"team": "ml"}
    bad = arm.call("PATCH", f"/onlineEndpoints/{name}", {"properties": {"traffic": {}}})
    assert bad.status_code == 400 and error_code(bad) == "BadArgument"


def test_keys_listed_regenerated_and_token_per_auth_mode(arm: Arm):
    name = unique("ep")
    arm.create_endpoint(name)
    keys = arm.keys(name)
    assert set(keys) == {"primaryKey", "secondaryKey"} and keys["primaryKey"] != keys["secondaryKey"]
    r = arm.call("POST", f"/onlineEndpoints/{name}/regenerateKeys", {"keyType": "Primary"})
    assert r.status_code == 202 and r.headers["Location"]
    assert arm.poll(r)["status"] == "Succeeded"
    after = arm.keys(name)
    assert after["primaryKey"] != keys["primaryKey"] and after["secondaryKey"] == keys["secondaryKey"]
    bad = arm.call("POST", f"/onlineEndpoints/{name}/regenerateKeys", {"keyType": "Tertiary"})
    assert bad.status_code == 400 and error_code(bad) == "BadArgument"
    assert arm.call("POST", f"/onlineEndpoints/{name}/token").status_code == 400
    token_ep = unique("tok")
    arm.create_endpoint(token_ep, auth="AMLToken")
    token = arm.call("POST", f"/onlineEndpoints/{token_ep}/token").json()
    assert token["tokenType"] == "Bearer" and token["accessToken"]
    assert token["expiryTimeUtc"] > token["refreshAfterTimeUtc"] > time.time()
    assert arm.call("POST", f"/onlineEndpoints/{token_ep}/listKeys").status_code == 400


def test_names_location_and_auth_mode_are_checked(arm: Arm):
    for bad in ("ab", "1starts-with-digit", "double--dash", "trailing-", "x" * 33, "under_score"):
        r = arm.put_endpoint(bad)
        assert r.status_code == 400 and error_code(r) == "BadArgument", bad
    r = arm.call("PUT", f"/onlineEndpoints/{unique('ep')}", {"properties": {"authMode": "Key"}})
    assert r.status_code == 400 and error_code(r) == "LocationRequired"
    r = arm.put_endpoint(unique("ep"), auth="Password")
    assert r.status_code == 400 and error_code(r) == "BadArgument"
    r = arm.call("PUT", f"/onlineEndpoints/{unique('ep')}", data=b"{not json",
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "InvalidRequestContent"


def test_delete_is_a_long_running_operation_and_a_missing_one_is_204(arm: Arm):
    name = unique("ep")
    arm.create_endpoint(name)
    r = arm.call("DELETE", f"/onlineEndpoints/{name}")
    assert r.status_code == 202 and r.headers["Location"] and r.headers["Retry-After"]
    assert arm.get(f"/onlineEndpoints/{name}")["properties"]["provisioningState"] == "Deleting"
    assert arm.poll(r)["status"] == "Succeeded"
    final = arm.http.get(r.headers["Location"], headers=arm.headers(), timeout=10)
    assert final.status_code == 200 and final.text == ""
    assert arm.call("GET", f"/onlineEndpoints/{name}").status_code == 404
    assert arm.call("DELETE", f"/onlineEndpoints/{name}").status_code == 204
