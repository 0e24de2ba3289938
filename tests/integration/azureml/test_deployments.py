"""Online deployments: the LRO of create/update/scale/delete, the service's refusals, a model that cannot load."""

from __future__ import annotations

from tests.integration.azureml.arm import Arm, error_code
from tests.integration.azureml.conftest import events, unique, upload


def test_create_deployment_lro_logs_and_model_deployed_event(arm: Arm, trained: dict):
    ep = unique("ep")
    arm.create_endpoint(ep)
    r = arm.put_deployment(ep, "blue", trained["model"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["properties"]["provisioningState"] == "Creating" and body["sku"]["capacity"] == 1
    assert body["id"] == f"{arm.aml['workspace_id']}/onlineEndpoints/{ep}/deployments/blue"
    assert r.headers["Azure-AsyncOperation"] and r.headers["Retry-After"]
    assert arm.get(f"/onlineEndpoints/{ep}")["properties"]["provisioningState"] == "Updating"
    busy = arm.put_deployment(ep, "green", trained["model"])
    assert busy.status_code == 409 and error_code(busy) == "Conflict"
    assert arm.poll(r)["status"] == "Succeeded"
    dep = arm.get(f"/onlineEndpoints/{ep}/deployments/blue")
    assert dep["properties"]["provisioningState"] == "Succeeded" and dep["properties"]["model"] == trained["model"]
    assert arm.get(f"/onlineEndpoints/{ep}")["properties"]["provisioningState"] == "Succeeded"
    assert [d["name"] for d in arm.get(f"/onlineEndpoints/{ep}/deployments")["value"]] == ["blue"]
    logs = arm.call("POST", f"/onlineEndpoints/{ep}/deployments/blue/getLogs",
                    {"containerType": "StorageInitializer", "tail": 5}).json()
    assert "Downloading model census:" in logs["content"]
    served = arm.call("POST", f"/onlineEndpoints/{ep}/deployments/blue/getLogs", {"tail": 1}).json()
    assert "loaded" in served["content"] and served["content"].count("\n") == 1
    deployed = [e for e in events(arm.m, arm.http.verify) if e["subject"] == f"endpoints/{ep}"]
    assert len(deployed) == 1 and deployed[0]["eventType"] == "Microsoft.MachineLearningServices.ModelDeployed"
    assert deployed[0]["data"] == {"ServiceName": ep, "ServiceComputeType": "Managed",
                                   "ModelIds": f"census:{trained['job']}", "ServiceTags": {},
                                   "ServiceProperties": {}}


def test_a_model_that_cannot_load_ends_failed_with_the_container_error(arm: Arm):
    upload(arm.m, arm.aml["datastore"]["container"], "broken/model.json", b'{"format": "something-else"}')
    assert arm.register_model("broken", "1", "azureml://datastores/workspaceblobstore/paths/broken/") \
        .status_code == 201
    ep = unique("ep")
    arm.create_endpoint(ep)
    r = arm.put_deployment(ep, "bad", arm.model_id("broken", "1"))
    status = arm.poll(r)
    assert status["status"] == "Failed" and status["error"]["code"] == "ResourceNotReady"
    assert arm.get(f"/onlineEndpoints/{ep}/deployments/bad")["properties"]["provisioningState"] == "Failed"
    logs = arm.call("POST", f"/onlineEndpoints/{ep}/deployments/bad/getLogs",
                    {"containerType": "InferenceServer"}).json()["content"]
    assert "Traceback" in logs and "could not be loaded" in logs
    result_url = r.headers["Azure-AsyncOperation"].replace("mfeOperationsStatus", "mfeOperationResults")
    result = arm.http.get(result_url, headers=arm.headers(), timeout=10)
    assert result.status_code == 400 and error_code(result) == "ResourceNotReady"
    refused = arm.set_traffic(ep, {"bad": 100})
    assert refused.status_code == 400 and error_code(refused) == "BadArgument"
    assert not [e for e in events(arm.m, arm.http.verify) if e["subject"] == f"endpoints/{ep}"]


def test_missing_model_blob_fails_the_deployment(arm: Arm):
    assert arm.register_model("ghost", "1", "azureml://datastores/workspaceblobstore/paths/ghost/").status_code \
        == 201
    ep = unique("ep")
    arm.create_endpoint(ep)
    status = arm.poll(arm.put_deployment(ep, "ghost", arm.model_id("ghost", "1")))
    assert status["status"] == "Failed" and status["error"]["code"] == "BadArgument"
    assert "Unable to download user model" in status["error"]["message"]


def test_traffic_rules(arm: Arm, trained: dict):
    ep = unique("ep")
    arm.create_endpoint(ep)
    arm.create_deployment(ep, "blue", trained["model"])
    arm.create_deployment(ep, "green", trained["model"])
    cases: list[tuple[dict, dict]] = [
        ({"blue": 60, "green": 30}, {}), ({"blue": 100, "nope": 0}, {}), ({"blue": 101}, {}),
        ({"blue": 100}, {"green": 51}), ({"blue": 100}, {"blue": 10}), ({"blue": 50, "green": 50}, {"green": 10}),
        ({"blue": "100"}, {})]
    for traffic, mirror in cases:
        r = arm.set_traffic(ep, traffic, mirror)
        assert r.status_code == 400 and error_code(r) == "BadArgument", (traffic, mirror, r.text)
    r = arm.set_traffic(ep, {"blue": 90, "green": 10})
    assert r.status_code == 200 and r.json()["properties"]["traffic"] == {"blue": 90, "green": 10}
    assert r.json()["properties"]["provisioningState"] == "Updating" and r.headers["Azure-AsyncOperation"]
    assert arm.poll(r)["status"] == "Succeeded"
    assert arm.get(f"/onlineEndpoints/{ep}")["properties"]["traffic"] == {"blue": 90, "green": 10}
    refused = arm.call("DELETE", f"/onlineEndpoints/{ep}/deployments/green")
    assert refused.status_code == 400 and error_code(refused) == "BadArgument"
    assert arm.poll(arm.set_traffic(ep, {"blue": 100, "green": 0}))["status"] == "Succeeded"
    r = arm.call("DELETE", f"/onlineEndpoints/{ep}/deployments/green")
    assert r.status_code == 202 and r.headers["Location"]
    assert arm.get(f"/onlineEndpoints/{ep}/deployments/green")["properties"]["provisioningState"] == "Deleting"
    assert arm.poll(r)["status"] == "Succeeded"
    assert arm.call("GET", f"/onlineEndpoints/{ep}/deployments/green").status_code == 404
    assert arm.get(f"/onlineEndpoints/{ep}")["properties"]["traffic"] == {"blue": 100}
    assert arm.call("DELETE", f"/onlineEndpoints/{ep}/deployments/green").status_code == 204


def test_update_scale_and_request_checks(arm: Arm, trained: dict):
    ep = unique("ep")
    arm.create_endpoint(ep)
    arm.create_deployment(ep, "blue", trained["model"])
    r = arm.put_deployment(ep, "blue", trained["model"], capacity=2)
    assert r.status_code == 200 and r.json()["properties"]["provisioningState"] == "Updating"
    assert arm.poll(r)["status"] == "Succeeded"
    assert arm.get(f"/onlineEndpoints/{ep}/deployments/blue")["sku"]["capacity"] == 2
    r = arm.call("PATCH", f"/onlineEndpoints/{ep}/deployments/blue", {"sku": {"capacity": 3}, "tags": {"a": "b"}})
    assert r.status_code == 202 and arm.poll(r)["status"] == "Succeeded"
    dep = arm.get(f"/onlineEndpoints/{ep}/deployments/blue")
    assert dep["sku"]["capacity"] == 3 and dep["tags"] == {"a": "b"}
    bad = arm.call("PATCH", f"/onlineEndpoints/{ep}/deployments/blue", {"properties": {"model": "x"}})
    assert bad.status_code == 400 and error_code(bad) == "BadArgument"
    for name, model, capacity in (("x1", trained["model"], 1), ("green", "not-an-id", 1),
                                  ("green", arm.model_id("census", "999"), 1), ("green", trained["model"], 51),
                                  ("green", trained["model"], 0)):
        r = arm.put_deployment(ep, name, model, capacity)
        assert r.status_code == 400 and error_code(r) == "BadArgument", (name, model, capacity)
    assert arm.call("PUT", f"/onlineEndpoints/nope-{unique('x')}/deployments/blue",
                    {"location": "local", "properties": {"model": trained["model"]}}).status_code == 404
    r = arm.call("DELETE", f"/onlineEndpoints/{ep}")  # an endpoint goes with its deployments, traffic or not
    assert r.status_code == 202 and arm.poll(r)["status"] == "Succeeded"
    assert arm.call("GET", f"/onlineEndpoints/{ep}/deployments/blue").status_code == 404
