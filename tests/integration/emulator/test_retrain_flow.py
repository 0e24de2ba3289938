"""The whole classic retraining flow against the emulator and Azurite: train with BES, create a non-default
endpoint, PATCH it with the job's output1, and see its scores change; the default endpoint refuses the PATCH."""

from __future__ import annotations

import csv
import io

from tests.integration.emulator.studio import Studio, error_codes
from tools.emulator.census import csv_text


def sample_rows(n: int = 8, seed: int = 99) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(csv_text(n, seed))))
    return rows


def probabilities(resp_json: dict) -> list[float]:
    value = resp_json["Results"]["output1"]["value"]
    i = value["ColumnNames"].index("Scored Probabilities")
    return [float(row[i]) for row in value["Values"]]


def test_training_job_patch_and_scores_change(shared_emulator):
    studio = Studio(shared_emulator.manifest)
    studio.upload("training-data", "flow/drifted.csv", csv_text(6000, seed=7, drift=1.0))
    result = studio.run_training("training-data/flow/drifted.csv", run="flow1")
    assert result["StatusCode"] == "Finished", result
    model_ref = result["Results"]["output1"]
    assert model_ref["RelativeLocation"] == "models/flow1/model.ilearner"
    assert model_ref["BaseLocation"].endswith("/") and model_ref["SasBlobToken"].startswith("?")
    assert "sp=r&" in model_ref["SasBlobToken"] + "&" and "sr=b" in model_ref["SasBlobToken"]
    evaluation = list(csv.DictReader(io.StringIO(studio.download(result["Results"]["output2"]).decode())))
    assert 0.7 < float(evaluation[0]["AUC"]) <= 1.0

    ep = studio.create_endpoint()
    rows = sample_rows()
    before = studio.score(ep["ApiLocation"], ep["PrimaryKey"], rows)
    assert before.status_code == 200, before.text
    location = {k: model_ref[k] for k in ("BaseLocation", "RelativeLocation", "SasBlobToken")}
    patched = studio.patch_model(ep["Name"], location)
    assert patched.status_code == 200, patched.text
    got = studio.mgmt("GET", studio.ep_url(ep["Name"])).json()
    assert got["Resources"][0]["Location"]["RelativeLocation"] == "models/flow1/model.ilearner"
    after = studio.score(ep["ApiLocation"], ep["PrimaryKey"], rows)
    assert after.status_code == 200
    assert probabilities(before.json()) != probabilities(after.json())

    refused = studio.patch_model("default", location)
    assert refused.status_code == 400
    assert error_codes(refused) == ("InvalidOperation", "DefaultEndpointNotUpdatable")
