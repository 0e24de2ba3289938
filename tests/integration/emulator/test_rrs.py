"""Contract tests of request-response scoring: both formats, strings on the wire, errors, auth, throttling."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.integration.emulator.studio import Studio, error_codes
from tests.integration.emulator.test_retrain_flow import sample_rows


@pytest.fixture(scope="module")
def studio(shared_emulator) -> Studio:
    return Studio(shared_emulator.manifest)


@pytest.fixture(scope="module")
def endpoint(studio):
    return studio.create_endpoint()


def test_classic_format_echoes_inputs_and_adds_scores_as_strings(studio, endpoint):
    rows = sample_rows(3)
    r = studio.score(endpoint["ApiLocation"], endpoint["PrimaryKey"], rows)
    assert r.status_code == 200
    out = r.json()["Results"]["output1"]
    assert out["type"] == "table"
    value = out["value"]
    assert value["ColumnNames"] == list(rows[0]) + ["Scored Labels", "Scored Probabilities"]
    assert value["ColumnTypes"][-2:] == ["String", "Double"] and value["ColumnTypes"][0] == "Int32"
    assert all(isinstance(v, str) for row in value["Values"] for v in row)
    assert [row[0] for row in value["Values"]] == [r["age"] for r in rows]
    assert {row[-2] for row in value["Values"]} <= {">50K", "<=50K"}


def test_numbers_as_json_numbers_are_accepted(studio, endpoint):
    rows = [{k: (int(v) if v.isdigit() else v) for k, v in r.items()} for r in sample_rows(2)]
    r = studio.score(endpoint["ApiLocation"], endpoint["PrimaryKey"], rows)
    assert r.status_code == 200 and r.json()["Results"]["output1"]["value"]["Values"][0][0] == str(rows[0]["age"])


def test_swagger_format(studio, endpoint):
    rows = sample_rows(2)
    r = studio.http.post(endpoint["ApiLocation"] + "/execute", params={"api-version": "2.0", "format": "swagger"},
                         headers=studio.auth(endpoint["SecondaryKey"]),
                         json={"Inputs": {"input1": rows}, "GlobalParameters": {}}, timeout=10)
    assert r.status_code == 200, r.text
    out = r.json()["Results"]["output1"]
    assert isinstance(out, list) and len(out) == 2
    assert out[0]["age"] == rows[0]["age"] and "Scored Probabilities" in out[0]


def test_swagger_document_names_the_endpoint(studio, endpoint):
    r = studio.http.get(endpoint["ApiLocation"] + "/swagger.json", params={"api-version": "2.0"},
                        headers=studio.auth(endpoint["PrimaryKey"]), timeout=10)
    assert r.status_code == 200 and r.json()["info"]["x-endpoint-name"] == endpoint["Name"]


def test_scoring_errors(studio, endpoint):
    url, key = endpoint["ApiLocation"] + "/execute", endpoint["PrimaryKey"]
    r = studio.score(endpoint["ApiLocation"], "wrong-key", sample_rows(1))
    assert r.status_code == 401 and error_codes(r) == ("Unauthorized", "ScoreRequestUnauthorized")
    r = studio.http.post(url, params={"api-version": "3.0"}, headers=studio.auth(key), json={}, timeout=10)
    assert error_codes(r) == ("BadArgument", "BadVersionCall")
    rows = sample_rows(1)
    del rows[0]["education"]
    r = studio.score(endpoint["ApiLocation"], key, rows)
    assert r.status_code == 400 and error_codes(r) == ("BadUserArgument", "InputMismatchError")
    rows = sample_rows(1)
    rows[0]["age"] = "forty"
    r = studio.score(endpoint["ApiLocation"], key, rows)
    assert r.status_code == 400 and error_codes(r) == ("BadUserArgument", "InputParseError")
    body = {"Inputs": {"input1": {"ColumnNames": ["age", "sex"], "Values": [["1"]]}}}
    r = studio.http.post(url, params={"api-version": "2.0"}, headers=studio.auth(key), json=body, timeout=10)
    assert error_codes(r) == ("BadUserArgument", "InputMismatchError")
    r = studio.http.post(url, params={"api-version": "2.0"}, headers=studio.auth(key),
                         json={"Inputs": {"data": {}}}, timeout=10)
    assert error_codes(r) == ("BadArgument", "InvalidInputNames")
    r = studio.http.post(url, params={"api-version": "2.0"}, headers=studio.auth(key), data=b"[", timeout=10)
    assert error_codes(r) == ("BadArgument", "RequestBodyInvalid")


def test_training_service_has_no_request_response(studio):
    r = studio.score(studio.m["training_service"]["api_location"], studio.m["training_service"]["api_key"],
                     sample_rows(1))
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "RequestResponseNotSupported")


def test_max_concurrent_calls_enforced_with_request_throttled(studio):
    ep = studio.create_endpoint(ThrottleLevel="High", MaxConcurrentCalls=2)
    rule = studio.http.post(studio.m["admin_url"] + "/faults", json={"route": "rrs.execute", "latency_ms": 400,
                                                                     "count": 6}, timeout=10).json()[0]
    try:
        rows = sample_rows(1)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: studio.score(ep["ApiLocation"], ep["PrimaryKey"], rows), range(6)))
    finally:
        studio.http.delete(studio.m["admin_url"] + f"/faults/{rule['id']}", timeout=10)
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
    throttled = next(r for r in results if r.status_code == 503)
    assert error_codes(throttled) == ("ServiceUnavailable", "RequestThrottled")


def test_a_model_the_endpoint_cannot_load_fails_scoring_with_resource_load_failed(studio):
    import json

    from tools.emulator.learner import MODEL_FORMAT, MODEL_FORMAT_VERSION

    broken = {"format": MODEL_FORMAT, "formatVersion": MODEL_FORMAT_VERSION, "learner": "x", "numeric": [],
              "categorical": [], "weights": [1.0, 2.0], "bias": 0.0, "label": {"positive": "a", "negative": "b"}}
    studio.upload("models", "broken/model.ilearner", json.dumps(broken))
    ep = studio.create_endpoint()
    default = studio.mgmt("GET", studio.ep_url("default")).json()["Resources"][0]["Location"]
    r = studio.patch_model(ep["Name"], {"BaseLocation": default["BaseLocation"],
                                        "RelativeLocation": "models/broken/model.ilearner",
                                        "SasBlobToken": studio.sas("models/broken/model.ilearner")})
    assert r.status_code == 200, r.text  # it looks like a model: PATCH takes it
    r = studio.score(ep["ApiLocation"], ep["PrimaryKey"], sample_rows(1))
    assert r.status_code == 500 and error_codes(r) == ("InternalError", "ResourceLoadFailed")
