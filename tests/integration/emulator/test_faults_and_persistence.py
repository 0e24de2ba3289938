"""Fault injection (status + Retry-After, latency, dropped connections, rates) and state across a restart."""

from __future__ import annotations

import time

import pytest
import requests

from tests.integration.emulator.studio import Studio, error_codes


def test_fault_flags_answer_status_with_retry_after_for_n_calls(start_emulator):
    emu = start_emulator("--fault", "route=management.get_endpoint,status=503,retry_after=2,count=2")
    studio = Studio(emu.manifest)
    first = studio.mgmt("GET", studio.ep_url("default"))
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    assert error_codes(first) == ("ServiceUnavailable", "RequestThrottled")
    assert studio.mgmt("GET", studio.ep_url("default")).status_code == 503
    assert studio.mgmt("GET", studio.ep_url("default")).status_code == 200


@pytest.fixture
def studio(shared_emulator):
    s = Studio(shared_emulator.manifest)
    yield s
    requests.delete(s.m["admin_url"] + "/faults", timeout=10)


def add_fault(studio, **rule):
    r = requests.post(studio.m["admin_url"] + "/faults", json=rule, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()[0]


def test_admin_api_429_latency_and_drop(studio):
    add_fault(studio, route="management.list_*", status=429, retry_after=1, count=1)
    r = studio.mgmt("GET", studio.mgmt_url())
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert studio.mgmt("GET", studio.mgmt_url()).status_code == 200
    add_fault(studio, route="management.get_service", latency_ms=300, count=1)
    started = time.monotonic()
    assert studio.mgmt("GET", studio.mgmt_url(f"/{studio.m['predictive_service']['id']}")).status_code == 200
    assert time.monotonic() - started >= 0.3
    add_fault(studio, route="management.get_endpoint", drop=True, count=1)
    with pytest.raises(requests.ConnectionError):
        studio.mgmt("GET", studio.ep_url("default"))
    assert studio.mgmt("GET", studio.ep_url("default")).status_code == 200


def test_rate_faults_hit_some_calls_and_list_shows_hits(studio):
    rule = add_fault(studio, route="management.get_endpoint", method="GET", status=500, rate=0.5)
    codes = [studio.mgmt("GET", studio.ep_url("default")).status_code for _ in range(40)]
    assert 5 <= codes.count(500) <= 35 and codes.count(200) >= 5
    listed = requests.get(studio.m["admin_url"] + "/faults", timeout=10).json()
    assert next(r for r in listed if r["id"] == rule["id"])["hits"] == codes.count(500)


def test_bad_fault_rule_is_refused(studio):
    r = requests.post(studio.m["admin_url"] + "/faults", json={"route": "x", "status": 418}, timeout=10)
    assert r.status_code == 400


def test_state_survives_a_restart(start_emulator, run_dir):
    data = run_dir / "persist-data"
    first = start_emulator(data_dir=data)
    studio = Studio(first.manifest)
    ep = studio.create_endpoint("kept", Description="survives")
    from tools.emulator.census import csv_text

    studio.upload("training-data", "persist/census.csv", csv_text(1500, seed=2, drift=1.0))
    result = studio.run_training("training-data/persist/census.csv", run="persist")
    location = {k: result["Results"]["output1"][k] for k in ("BaseLocation", "RelativeLocation", "SasBlobToken")}
    assert studio.patch_model("kept", location).status_code == 200
    from tests.integration.emulator.test_retrain_flow import probabilities, sample_rows

    rows = sample_rows()
    scores = probabilities(studio.score(ep["ApiLocation"], ep["PrimaryKey"], rows).json())
    time.sleep(0.8)  # let the debounced saver write
    first.stop()

    second = start_emulator(data_dir=data)
    again = Studio(second.manifest)
    assert second.manifest["workspace_id"] == first.manifest["workspace_id"]
    assert second.manifest["workspace_token"] == first.manifest["workspace_token"]
    got = again.mgmt("GET", again.ep_url("kept")).json()
    assert got["PrimaryKey"] == ep["PrimaryKey"] and got["Description"] == "survives"
    assert got["Resources"][0]["Location"]["RelativeLocation"] == "models/persist/model.ilearner"
    assert probabilities(again.score(got["ApiLocation"], got["PrimaryKey"], rows).json()) == scores
    status = again.bes("GET", f"/{result['job_id']}").json()
    assert status["StatusCode"] == "Finished" and status["Results"]["output1"]["RelativeLocation"]
