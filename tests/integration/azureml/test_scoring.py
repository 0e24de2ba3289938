"""Scoring: auth per mode, routing by traffic weights (seeded), the azureml-model-deployment header, mirrored
traffic, and the documented status codes."""

from __future__ import annotations

import random
import time

import pytest
import requests

from tests.integration.azureml.arm import Arm
from tests.integration.azureml.conftest import census_rows, unique


@pytest.fixture(scope="module")
def blue_green(arm: Arm, trained: dict) -> dict:
    ep = unique("ep")
    arm.create_endpoint(ep)
    arm.create_deployment(ep, "blue", trained["model"])
    arm.create_deployment(ep, "green", trained["model"])
    return {"name": ep, "key": arm.keys(ep)["primaryKey"]}


def routing(arm: Arm, seed: int | None = None) -> dict:
    r = requests.post(f"{arm.aml['admin_url']}/routing", json={} if seed is None else {"seed": seed},
                      timeout=10, verify=arm.http.verify)
    r.raise_for_status()
    return dict(requests.get(f"{arm.aml['admin_url']}/routing", timeout=10, verify=arm.http.verify).json())


def test_score_answers_one_prediction_per_row_with_the_deployment_header(arm: Arm, blue_green: dict):
    assert arm.poll(arm.set_traffic(blue_green["name"], {"blue": 100, "green": 0}))["status"] == "Succeeded"
    ep = arm.get(f"/onlineEndpoints/{blue_green['name']}")
    r = arm.score(ep, blue_green["key"], census_rows(4))
    assert r.status_code == 200, r.text
    assert r.headers["azureml-model-deployment"] == "blue"
    rows = r.json()
    assert len(rows) == 4 and all(set(x) == {"label", "probability"} for x in rows)
    assert all(x["label"] in (">50K", "<=50K") and 0 <= x["probability"] <= 1 for x in rows)
    records = [dict(zip(census_rows(1)["input_data"]["columns"], census_rows(1)["input_data"]["data"][0],
                        strict=True))]
    assert arm.score(ep, blue_green["key"], {"input_data": records}).status_code == 200
    secondary = arm.keys(blue_green["name"])["secondaryKey"]
    assert arm.score(ep, secondary, census_rows(1)).status_code == 200


def test_header_routes_to_a_deployment_without_traffic(arm: Arm, blue_green: dict):
    ep = arm.get(f"/onlineEndpoints/{blue_green['name']}")
    for _ in range(3):
        r = arm.score(ep, blue_green["key"], census_rows(2), deployment="green")
        assert r.status_code == 200 and r.headers["azureml-model-deployment"] == "green"
    r = arm.score(ep, blue_green["key"], census_rows(2), deployment="purple")
    assert r.status_code == 404


def test_traffic_weights_route_with_a_reproducible_seeded_sequence(arm: Arm, blue_green: dict):
    name = blue_green["name"]
    assert arm.poll(arm.set_traffic(name, {"blue": 70, "green": 30}))["status"] == "Succeeded"
    ep = arm.get(f"/onlineEndpoints/{name}")

    def sequence() -> list[str]:
        return [arm.score(ep, blue_green["key"], census_rows(1)).headers["azureml-model-deployment"]
                for _ in range(60)]

    routing(arm, seed=42)
    first = sequence()
    routing(arm, seed=42)
    assert sequence() == first
    assert 30 <= first.count("blue") <= 55 and first.count("green") == 60 - first.count("blue")
    rng = random.Random(f"42/{name}")  # the documented algorithm: random.choices over the weights, per endpoint
    assert first == [rng.choices(["blue", "green"], [70, 30])[0] for _ in range(60)]


def test_mirror_traffic_copies_requests_and_discards_answers(arm: Arm, blue_green: dict):
    name = blue_green["name"]
    assert arm.poll(arm.set_traffic(name, {"blue": 100, "green": 0}, {"green": 50}))["status"] == "Succeeded"
    assert arm.get(f"/onlineEndpoints/{name}")["properties"]["mirrorTraffic"] == {"green": 50}
    ep = arm.get(f"/onlineEndpoints/{name}")
    routing(arm, seed=7)
    answered = [arm.score(ep, blue_green["key"], census_rows(1)).headers["azureml-model-deployment"]
                for _ in range(40)]
    assert set(answered) == {"blue"}

    def served_now() -> dict[str, dict[str, int]]:
        got = requests.get(f"{arm.aml['admin_url']}/routing", timeout=10, verify=arm.http.verify).json()
        return dict(got["served"][name])

    # a mirrored copy is scored in the background after its request is answered: read the counts once they settle
    served, deadline = served_now(), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if (again := served_now()) == served:
            break
        served = again
    assert served["blue"]["live"] == 40 and 10 <= served["green"]["mirror"] <= 30
    assert served["green"]["live"] == 0
    assert arm.poll(arm.set_traffic(name, {"blue": 100, "green": 0}))["status"] == "Succeeded"


def test_scoring_refusals(arm: Arm, blue_green: dict, trained: dict):
    ep = arm.get(f"/onlineEndpoints/{blue_green['name']}")
    assert arm.score(ep, "wrong-key", census_rows(1)).status_code == 401
    assert requests.post(ep["properties"]["scoringUri"], json=census_rows(1), timeout=10,
                         verify=arm.http.verify).status_code == 401
    r = arm.score(ep, blue_green["key"], {"input_data": {"columns": ["age"], "data": [[30]]}})
    assert r.status_code == 424 and r.headers["ms-azureml-model-error-statuscode"] == "400"
    assert "missing input column" in r.json()["error"]
    assert arm.score(ep, blue_green["key"], {"rows": []}).status_code == 424
    empty = unique("ep")
    arm.create_endpoint(empty)
    arm.create_deployment(empty, "blue", trained["model"])
    r = arm.score(arm.get(f"/onlineEndpoints/{empty}"), arm.keys(empty)["primaryKey"], census_rows(1))
    assert r.status_code == 404 and "No valid deployments to route to" in r.json()["message"]


def test_aml_token_and_entra_token_endpoints(arm: Arm, trained: dict):
    for mode in ("AMLToken", "AADToken"):
        name = unique("ep")
        arm.create_endpoint(name, auth=mode)
        arm.create_deployment(name, "blue", trained["model"])
        assert arm.poll(arm.set_traffic(name, {"blue": 100}, auth=mode))["status"] == "Succeeded"
        ep = arm.get(f"/onlineEndpoints/{name}")
        if mode == "AMLToken":
            token = arm.call("POST", f"/onlineEndpoints/{name}/token").json()["accessToken"]
        else:
            token = arm.token("https://ml.azure.com")
        assert arm.score(ep, token, census_rows(1)).status_code == 200
        assert arm.score(ep, arm.token(), census_rows(1)).status_code == 401  # a management token is not enough
