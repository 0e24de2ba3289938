"""Contract tests of BES: submit (both body forms), start, poll, cancel; validation codes; fresh SAS per GET;
real training results; failures with Details."""

from __future__ import annotations

import csv
import io
import time
from urllib.parse import parse_qs

import pytest
import requests

from tests.integration.emulator.studio import Studio, error_codes
from tools.emulator.census import csv_text
from tools.emulator.learner import EVALUATION_COLUMNS


@pytest.fixture(scope="module")
def studio(shared_emulator) -> Studio:
    s = Studio(shared_emulator.manifest)
    s.upload("training-data", "bes/census.csv", csv_text(2500, seed=11))
    return s


def test_submit_returns_quoted_job_id_and_not_started(studio):
    r = studio.bes("POST", json=studio.training_body("training-data/bes/census.csv", "bes-a"))
    assert r.status_code == 200
    assert r.text.startswith('"') and r.text.endswith('"')
    job_id = r.json()
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    status = studio.bes("GET", f"/{job_id}").json()
    assert status == {"StatusCode": "NotStarted", "Results": None, "Details": None}


def test_legacy_input_body_and_default_outputs(studio):
    body = {"Input": {"ConnectionString": studio.storage, "RelativeLocation": "training-data/bes/census.csv"},
            "Outputs": None, "GlobalParameters": None}
    r = studio.bes("POST", json=body)
    assert r.status_code == 200, r.text
    job_id = r.json()
    assert studio.bes("POST", f"/{job_id}/start").status_code == 204
    status = wait(studio, job_id)
    assert status["StatusCode"] == "Finished", status
    assert status["Results"]["output1"]["RelativeLocation"].endswith(".ilearner")
    assert studio.download(status["Results"]["output1"]).startswith(b"{")


def wait(studio, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = studio.bes("GET", f"/{job_id}").json()
        if status["StatusCode"] not in ("NotStarted", "Running"):
            return status
        time.sleep(0.1)
    raise TimeoutError(job_id)


def test_finished_job_results_evaluation_and_fresh_read_only_sas(studio):
    result = studio.run_training("training-data/bes/census.csv", run="bes-b")
    assert result["StatusCode"] == "Finished" and result["Details"] is None
    out1 = result["Results"]["output1"]
    assert out1["ConnectionString"] is None and out1["BaseLocation"].endswith("/")
    assert not out1["RelativeLocation"].startswith("/")
    query = parse_qs(out1["SasBlobToken"].lstrip("?"))
    assert query["sp"] == ["r"] and query["sr"] == ["b"]
    # The token cannot write.
    put = requests.put(out1["BaseLocation"] + out1["RelativeLocation"] + out1["SasBlobToken"], data=b"x",
                       headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert put.status_code == 403
    evaluation = list(csv.reader(io.StringIO(studio.download(result["Results"]["output2"]).decode())))
    assert evaluation[0] == EVALUATION_COLUMNS
    metrics = dict(zip(evaluation[0], evaluation[1], strict=True))
    tp, fn, fp, tn = (int(metrics[k]) for k in ("True Positive", "False Negative", "False Positive",
                                                 "True Negative"))
    assert tp + fn + fp + tn == round(2500 * 0.25)
    assert abs(float(metrics["Accuracy"]) - (tp + tn) / (tp + fn + fp + tn)) < 1e-9
    assert 0.7 < float(metrics["AUC"]) < 1.0
    time.sleep(1.1)  # tokens carry second-resolution times: a later GET mints a different one
    again = studio.bes("GET", f"/{result['job_id']}").json()["Results"]["output1"]["SasBlobToken"]
    assert again != out1["SasBlobToken"]


def test_start_twice_is_cannot_start_job(studio):
    job_id = studio.bes("POST", json=studio.training_body("training-data/bes/census.csv", "bes-c")).json()
    assert studio.bes("POST", f"/{job_id}/start").status_code == 204
    r = studio.bes("POST", f"/{job_id}/start")
    assert r.status_code == 400 and error_codes(r) == ("InvalidOperation", "CannotStartJob")
    assert "state" in r.json()["error"]["details"][0]["message"]


def test_cancel_not_started_and_running(start_emulator):
    s = Studio(start_emulator("--job-seconds", "30").manifest)
    s.upload("training-data", "bes/slow.csv", csv_text(500, seed=1))
    job_id = s.bes("POST", json=s.training_body("training-data/bes/slow.csv", "slow")).json()
    assert s.bes("POST", f"/{job_id}/start").status_code == 204
    assert s.bes("GET", f"/{job_id}").json()["StatusCode"] == "Running"
    assert s.bes("DELETE", f"/{job_id}").status_code == 204
    assert s.bes("GET", f"/{job_id}").json()["StatusCode"] == "Cancelled"
    other = s.bes("POST", json=s.training_body("training-data/bes/slow.csv", "slow2")).json()
    assert s.bes("DELETE", f"/{other}").status_code == 204
    assert s.bes("GET", f"/{other}").json()["StatusCode"] == "Cancelled"
    r = s.bes("POST", f"/{other}/start")
    assert r.status_code == 400 and error_codes(r) == ("InvalidOperation", "CannotStartJob")


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda b: b.pop("Inputs"), ("BadArgument", "BatchJobInputsNotSpecified")),
    (lambda b: b.update(Input=b["Inputs"]["input1"]), ("BadArgument", "BatchJobInputsTooManySpecified")),
    (lambda b: b["Inputs"].update(input2=b["Inputs"]["input1"]), ("BadArgument", "BatchJobInputsTooManySpecified")),
    (lambda b: b.update(Inputs={"data": b["Inputs"]["input1"]}), ("BadArgument", "InvalidInputNames")),
    (lambda b: b["Outputs"].update(output3=b["Outputs"]["output2"]), ("BadArgument", "InvalidOutputOverrideName")),
    (lambda b: b["Outputs"]["output1"].update(RelativeLocation="models/x/model.csv"),
     ("BadArgument", "InvalidBlobExtension")),
    (lambda b: b["Outputs"]["output2"].update(RelativeLocation="models/x/eval.ilearner"),
     ("BadArgument", "InvalidBlobExtension")),
    (lambda b: b["Inputs"]["input1"].update(ConnectionString="garbage"), ("BadArgument",
                                                                          "InvalidBlobConnectionString")),
    (lambda b: b.update(GlobalParameters={"random seed": "1"}), ("BadUserArgument", "UnexpectedParameter")),
    (lambda b: b.update(GlobalParameters={"Random seed": "abc"}), ("BadUserArgument", "UserParameterInvalid")),
    (lambda b: b.update(GlobalParameters={"Test fraction": "0.99"}), ("BadUserArgument", "UserParameterInvalid")),
])
def test_submit_validation_codes(studio, mutate, expected):
    body = studio.training_body("training-data/bes/census.csv", "bad")
    mutate(body)
    r = studio.bes("POST", json=body)
    assert r.status_code == 400, r.text
    assert error_codes(r) == expected


def test_bad_json_wrong_version_wrong_key_unknown_job(studio):
    r = studio.bes("POST", data=b"{")
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "RequestBodyInvalid")
    url = f"{studio.m['training_service']['api_location']}/jobs"
    r = studio.http.post(url, params={"api-version": "1.0"}, json={},
                         headers=studio.auth(studio.m["training_service"]["api_key"]), timeout=10)
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "BadVersionCall")
    r = studio.bes("POST", json=studio.training_body("training-data/bes/census.csv", "x"), key="wrong")
    assert r.status_code == 401 and error_codes(r) == ("Unauthorized", "ScoreRequestUnauthorized")
    r = studio.bes("GET", "/" + "0" * 32)
    assert r.status_code == 404 and error_codes(r) == ("NotFound", "JobNotFound")


@pytest.mark.parametrize(("data", "needle"), [
    ("age,workclass\n1,Private\n", "not found"),
    ("\xff\xfe garbage".encode("latin-1"), "UTF-8"),
    (b"", "empty"),
])
def test_malformed_input_fails_the_job_with_details(studio, data, needle):
    studio.upload("training-data", "bes/bad.csv", data)
    result = studio.run_training("training-data/bes/bad.csv", run="badinput")
    assert result["StatusCode"] == "Failed" and result["Results"] is None
    assert needle in result["Details"]


def test_single_class_label_and_ragged_rows_fail(studio):
    text = csv_text(200, seed=5).replace(">50K", "<=50K")
    studio.upload("training-data", "bes/oneclass.csv", text)
    assert "single class" in studio.run_training("training-data/bes/oneclass.csv")["Details"]
    lines = csv_text(50, seed=5).splitlines()
    lines[10] += ",extra"
    studio.upload("training-data", "bes/ragged.csv", "\n".join(lines))
    details = studio.run_training("training-data/bes/ragged.csv")["Details"]
    assert "line 11" in details


def test_missing_input_blob_fails_the_job(studio):
    result = studio.run_training("training-data/bes/does-not-exist.csv")
    assert result["StatusCode"] == "Failed" and "BlobNotFound" in result["Details"]


def test_batch_scoring_on_the_predictive_service(studio):
    ep = studio.create_endpoint()
    studio.upload("scoring", "in/rows.csv", csv_text(20, seed=4))
    body = {"Inputs": {"input1": {"ConnectionString": studio.storage, "RelativeLocation": "scoring/in/rows.csv"}},
            "Outputs": {"output1": {"ConnectionString": studio.storage, "RelativeLocation": "scoring/out/s.csv"}}}
    hdr = studio.auth(ep["PrimaryKey"])
    job = studio.http.post(ep["ApiLocation"] + "/jobs", params={"api-version": "2.0"}, json=body, headers=hdr,
                           timeout=10).json()
    studio.http.post(ep["ApiLocation"] + f"/jobs/{job}/start", params={"api-version": "2.0"}, headers=hdr,
                     timeout=10)
    deadline = time.monotonic() + 60  # as `wait` gives a training job (it was 100 polls: ~10 s, little on a busy host)
    while True:
        status = studio.http.get(ep["ApiLocation"] + f"/jobs/{job}", params={"api-version": "2.0"}, headers=hdr,
                                 timeout=10).json()
        if status["StatusCode"] not in ("NotStarted", "Running"):
            break
        assert time.monotonic() < deadline, f"the scoring job did not finish: {status}"
        time.sleep(0.1)
    assert status["StatusCode"] == "Finished", status
    rows = list(csv.DictReader(io.StringIO(studio.download(status["Results"]["output1"]).decode())))
    assert len(rows) == 20 and {r["Scored Labels"] for r in rows} <= {">50K", "<=50K"}
    assert all(0.0 <= float(r["Scored Probabilities"]) <= 1.0 for r in rows)
