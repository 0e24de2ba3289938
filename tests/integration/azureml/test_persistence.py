"""With --data, endpoints, keys, deployments (and the model they serve), models and jobs survive a restart."""

from __future__ import annotations

import time

from tests.integration.azureml.arm import Arm
from tests.integration.azureml.conftest import census_csv_url, census_rows
from tests.support.azureml import FAST


def test_state_survives_a_restart(start_emulator, run_dir):
    data = run_dir / "azureml-persist"
    first = start_emulator(*FAST, data_dir=data)
    arm = Arm(first.manifest)
    assert arm.submit_job("persisted", census_csv_url(arm, rows=400, seed=5)).status_code == 201
    assert arm.wait_job("persisted")["properties"]["status"] == "Completed"
    assert arm.register_model("kept", "1", "azureml://jobs/persisted/outputs/model").status_code == 201
    arm.create_endpoint("kept-ep")
    arm.create_deployment("kept-ep", "blue", arm.model_id("kept", "1"))
    assert arm.poll(arm.set_traffic("kept-ep", {"blue": 100}))["status"] == "Succeeded"
    keys = arm.keys("kept-ep")
    before = arm.score(arm.get("/onlineEndpoints/kept-ep"), keys["primaryKey"], census_rows(3)).json()
    time.sleep(0.8)  # the debounced saver
    first.stop()

    second = start_emulator(*FAST, data_dir=data)
    again = Arm(second.manifest)
    assert again.aml["workspace_id"] == arm.aml["workspace_id"]
    ep = again.get("/onlineEndpoints/kept-ep")
    assert ep["properties"]["traffic"] == {"blue": 100} and again.keys("kept-ep") == keys
    assert again.get("/jobs/persisted")["properties"]["status"] == "Completed"
    assert again.get("/models/kept/versions/1")["properties"]["modelUri"].endswith("/outputs/model")
    assert again.score(ep, keys["primaryKey"], census_rows(3)).json() == before
