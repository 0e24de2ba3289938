"""Contract tests of the management API: shapes, name and throttle rules, auth, limits, every error code."""

from __future__ import annotations

import time

import pytest

from tests.integration.emulator.studio import Studio, error_codes

ENDPOINT_FIELDS = ["Name", "Description", "CreationTime", "WorkspaceId", "WebServiceId", "HelpLocation",
                   "PrimaryKey", "SecondaryKey", "ApiLocation", "Version", "PreventUpdate", "MaxConcurrentCalls",
                   "DiagnosticsTraceLevel", "ThrottleLevel", "Resources"]


@pytest.fixture(scope="module")
def studio(shared_emulator) -> Studio:
    return Studio(shared_emulator.manifest)


def test_list_and_get_web_services(studio):
    r = studio.mgmt("GET", studio.mgmt_url())
    assert r.status_code == 200
    services = {s["Id"]: s for s in r.json()}
    pred = services[studio.m["predictive_service"]["id"]]
    assert pred["Name"] == "Census Model [predictive exp.]"
    assert pred["DefaultEndpointName"] == "default" and pred["WorkspaceId"] == studio.ws
    assert set(pred) >= {"Id", "Name", "Description", "CreationTime", "WorkspaceId", "DefaultEndpointName"}
    one = studio.mgmt("GET", studio.mgmt_url(f"/{pred['Id']}"))
    assert one.status_code == 200 and one.json()["Id"] == pred["Id"]


def test_unknown_service_and_workspace_are_404(studio):
    r = studio.mgmt("GET", studio.mgmt_url("/0123456789abcdef0123456789abcdef"))
    assert r.status_code == 404 and error_codes(r) == ("NotFound", "WebServiceNotFound")
    url = f"{studio.m['management_url']}/workspaces/ffffffffffffffffffffffffffffffff/webservices"
    r = studio.mgmt("GET", url)
    assert r.status_code == 404 and error_codes(r) == ("NotFound", "WorkspaceNotFound")
    assert "x-ms-request-id" in r.headers


def test_default_endpoint_has_the_trained_model_resource(studio):
    r = studio.mgmt("GET", studio.ep_url("default"))
    assert r.status_code == 200
    ep = r.json()
    assert set(ENDPOINT_FIELDS) <= set(ep)
    res = ep["Resources"][0]
    assert res["Name"] == "Census Model [trained model]" and res["Kind"] == "TrainedModel"
    assert set(res["Location"]) == {"BaseLocation", "RelativeLocation", "SasBlobToken"}
    assert res["Location"]["RelativeLocation"].endswith(".ilearner")
    assert ep["ApiLocation"].endswith("/services/" + ep["HelpLocation"].rsplit("/", 1)[1])


def test_create_endpoint_shape_and_inherits_the_default_model(studio):
    ep = studio.create_endpoint("ep-create-1", Description="tenant one")
    assert set(ENDPOINT_FIELDS) <= set(ep)
    assert ep["Name"] == "ep-create-1" and ep["Description"] == "tenant one"
    assert ep["ThrottleLevel"] == "Low" and ep["MaxConcurrentCalls"] == 4
    assert ep["PrimaryKey"] != ep["SecondaryKey"]
    default = studio.mgmt("GET", studio.ep_url("default")).json()
    assert ep["Resources"][0]["Location"]["RelativeLocation"] == \
        default["Resources"][0]["Location"]["RelativeLocation"]
    listed = studio.mgmt("GET", studio.mgmt_url(f"/{studio.m['predictive_service']['id']}/endpoints"))
    assert "ep-create-1" in [e["Name"] for e in listed.json()]


@pytest.mark.parametrize("name", ["UPPER", "-lead", "trail-", "a" * 25, "under_score", "sp ace"])
def test_endpoint_name_rules(studio, name):
    r = studio.mgmt("PUT", studio.ep_url(name), json={"Description": "x"})
    assert r.status_code in (400, 404)
    if r.status_code == 400:
        assert error_codes(r) == ("BadArgument", "InvalidEndpointName")


def test_endpoint_name_limits_accept_24_chars_and_inner_hyphens(studio):
    assert studio.create_endpoint("a" * 22 + "-b")["Name"] == "a" * 22 + "-b"


def test_duplicate_endpoint_conflicts(studio):
    studio.create_endpoint("ep-dup")
    r = studio.mgmt("PUT", studio.ep_url("ep-dup"), json={})
    assert r.status_code == 409 and error_codes(r) == ("Conflict", "EndpointAlreadyExists")


def test_throttle_rules(studio):
    low = studio.create_endpoint("ep-low", ThrottleLevel="Low", MaxConcurrentCalls=50)
    assert low["MaxConcurrentCalls"] == 4  # Low forces 4
    high = studio.create_endpoint("ep-high", ThrottleLevel="High", MaxConcurrentCalls=150)
    assert high["ThrottleLevel"] == "High" and high["MaxConcurrentCalls"] == 150
    for calls in (0, 201, "ten"):
        r = studio.mgmt("PUT", studio.ep_url(f"ep-bad{calls}".lower()[:20]),
                        json={"ThrottleLevel": "High", "MaxConcurrentCalls": calls})
        assert r.status_code == 400 and error_codes(r) == ("BadArgument", "InvalidMaxConcurrentCalls")
    r = studio.mgmt("PUT", studio.ep_url("ep-medium"), json={"ThrottleLevel": "Medium"})
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "InvalidThrottleLevel")


def test_auth_workspace_token_endpoint_keys_and_refusals(studio):
    ep = studio.create_endpoint("ep-auth")
    other = studio.create_endpoint("ep-auth-other")
    for key in (ep["PrimaryKey"], ep["SecondaryKey"]):
        assert studio.mgmt("GET", studio.ep_url("ep-auth"), key=key).status_code == 200
    r = studio.mgmt("GET", studio.ep_url("ep-auth"), key=other["PrimaryKey"])
    assert r.status_code == 401 and error_codes(r) == ("Unauthorized", "ManagementRequestUnauthorized")
    assert studio.http.get(studio.ep_url("ep-auth"), timeout=10).status_code == 401
    r = studio.mgmt("GET", studio.mgmt_url(), key=ep["PrimaryKey"])  # endpoint keys do not list services
    assert r.status_code == 401
    r = studio.mgmt("PUT", studio.ep_url("ep-auth-new"), key=ep["PrimaryKey"], json={})
    assert r.status_code == 401


def test_get_and_delete_unknown_endpoint_404(studio):
    for method in ("GET", "DELETE", "PATCH"):
        r = studio.mgmt(method, studio.ep_url("nope"), json={"Description": "x"})
        assert r.status_code == 404 and error_codes(r) == ("NotFound", "EndpointNotFound")


def test_delete_endpoint_and_default_refused(studio):
    studio.create_endpoint("ep-del")
    assert studio.mgmt("DELETE", studio.ep_url("ep-del")).status_code == 204
    assert studio.mgmt("GET", studio.ep_url("ep-del")).status_code == 404
    r = studio.mgmt("DELETE", studio.ep_url("default"))
    assert r.status_code == 400 and error_codes(r) == ("InvalidOperation", "DefaultEndpointNotDeletable")


def test_patch_description_trace_and_throttle(studio):
    studio.create_endpoint("ep-props")
    r = studio.mgmt("PATCH", studio.ep_url("ep-props"), json={
        "Description": "changed", "DiagnosticsTraceLevel": "All", "ThrottleLevel": "High",
        "MaxConcurrentCalls": 10})
    assert r.status_code == 200, r.text
    got = studio.mgmt("GET", studio.ep_url("ep-props")).json()
    assert (got["Description"], got["DiagnosticsTraceLevel"], got["ThrottleLevel"], got["MaxConcurrentCalls"]) == \
        ("changed", "All", "High", 10)
    r = studio.mgmt("PATCH", studio.ep_url("ep-props"), json={"DiagnosticsTraceLevel": "Verbose"})
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "RequestBodyInvalid")
    r = studio.mgmt("PATCH", studio.ep_url("ep-props"), json={"Description": "x" * 2001})
    assert r.status_code == 400
    r = studio.mgmt("PATCH", studio.ep_url("ep-props"), data=b"{not json")
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "RequestBodyInvalid")


@pytest.fixture(scope="module")
def trained(studio):
    from tools.emulator.census import csv_text

    studio.upload("training-data", "mgmt/train.csv", csv_text(3000, seed=3, drift=0.8))
    result = studio.run_training("training-data/mgmt/train.csv", run="mgmt")
    assert result["StatusCode"] == "Finished", result
    return result["Results"]["output1"]


def loc(ref, **override):
    out = {k: ref[k] for k in ("BaseLocation", "RelativeLocation", "SasBlobToken")}
    out.update(override)
    return out


def test_patch_errors_each_have_a_specific_code(studio, trained):
    studio.create_endpoint("ep-patch-errors")
    cases = [
        (loc(trained), "Wrong Name [trained model]", ("BadArgument", "InvalidResourceName")),
        (loc(trained), "", ("BadArgument", "InvalidResourceName")),
        (loc(trained, RelativeLocation="models/mgmt/evaluation.csv"), None, ("BadArgument", "InvalidBlobExtension")),
        (loc(trained, RelativeLocation="models/missing/model.ilearner",
             SasBlobToken=studio.sas("models/missing/model.ilearner")), None, ("BadArgument", "BlobNotFound")),
        (loc(trained, SasBlobToken=trained["SasBlobToken"].replace("sig=", "sig=AAAA")), None,
         ("BadArgument", "BlobAuthenticationFailed")),
        (loc(trained, SasBlobToken=""), None, ("BadArgument", "InvalidBlob")),
    ]
    for location, name, expected in cases:
        r = studio.patch_model("ep-patch-errors", location, resource=name)
        assert r.status_code == 400, (expected, r.text)
        assert error_codes(r) == expected, r.text


def test_patch_expired_sas_is_refused(studio, trained):
    studio.create_endpoint("ep-expired")
    r = studio.patch_model("ep-expired", loc(trained, SasBlobToken=studio.sas(trained["RelativeLocation"], -60)))
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "SasTokenExpired")


def test_patch_not_a_model_is_incompatible(studio, trained):
    studio.upload("models", "junk/not-a-model.ilearner", b"\x00\x01 binary junk")
    studio.upload("models", "junk/other.ilearner", b'{"format": "something-else"}')
    studio.create_endpoint("ep-junk")
    for rel in ("models/junk/not-a-model.ilearner", "models/junk/other.ilearner"):
        r = studio.patch_model("ep-junk", loc(trained, RelativeLocation=rel, SasBlobToken=studio.sas(rel)))
        assert r.status_code == 400 and error_codes(r) == ("InvalidOperation", "IncompatibleModel"), r.text


def test_patch_training_service_is_refused(studio, trained):
    r = studio.mgmt(
        "PATCH", studio.ep_url("default", service=studio.m["training_service"]["id"]),
        json={"Resources": [{"Name": "Census Model [trained model]", "Location": loc(trained)}]})
    assert r.status_code == 400 and error_codes(r) == ("InvalidOperation", "NoUpdatableResources")


def test_patch_with_endpoint_key_and_refresh(studio, trained):
    ep = studio.create_endpoint("ep-refresh")
    r = studio.patch_model("ep-refresh", loc(trained), key=ep["PrimaryKey"])
    assert r.status_code == 200, r.text
    assert r.json()["Resources"][0]["Location"]["RelativeLocation"] == trained["RelativeLocation"]
    url = studio.ep_url("ep-refresh") + "/refresh"
    r = studio.mgmt("POST", url, json={"OverwriteResources": "True"})
    assert r.status_code == 200
    default = studio.mgmt("GET", studio.ep_url("default")).json()
    assert r.json()["Resources"][0]["Location"]["RelativeLocation"] == \
        default["Resources"][0]["Location"]["RelativeLocation"]
    assert studio.mgmt("POST", url, json={"OverwriteResources": "True"}).status_code == 304
    r = studio.mgmt("POST", studio.ep_url("default") + "/refresh", json={})
    assert r.status_code == 400 and error_codes(r) == ("InvalidOperation", "DefaultEndpointNotRefreshable")
    studio.create_endpoint("ep-locked", PreventUpdate=True)
    r = studio.mgmt("POST", studio.ep_url("ep-locked") + "/refresh", json={"OverwriteResources": "True"})
    assert r.status_code == 400 and error_codes(r) == ("InvalidOperation", "EndpointUpdatePrevented")


def test_free_tier_allows_three_endpoints_and_low_only(start_emulator):
    free = Studio(start_emulator("--tier", "free").manifest)
    free.create_endpoint("free-1")
    free.create_endpoint("free-2")
    r = free.mgmt("PUT", free.ep_url("free-3"), json={})
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "EndpointLimitReached")
    free.mgmt("DELETE", free.ep_url("free-2"))
    r = free.mgmt("PUT", free.ep_url("free-3"), json={"ThrottleLevel": "High", "MaxConcurrentCalls": 20})
    assert r.status_code == 400 and error_codes(r) == ("BadArgument", "InvalidThrottleLevel")


def test_propagation_delay_get_shows_new_location_at_once(start_emulator, trained):
    studio = Studio(start_emulator("--propagation-seconds", "1.5").manifest)
    ep = studio.create_endpoint("ep-slow")
    from tests.integration.emulator.test_retrain_flow import probabilities, sample_rows

    rows = sample_rows()
    before = probabilities(studio.score(ep["ApiLocation"], ep["PrimaryKey"], rows).json())
    assert studio.patch_model("ep-slow", loc(trained)).status_code == 200
    got = studio.mgmt("GET", studio.ep_url("ep-slow")).json()
    assert got["Resources"][0]["Location"]["RelativeLocation"] == trained["RelativeLocation"]
    assert probabilities(studio.score(ep["ApiLocation"], ep["PrimaryKey"], rows).json()) == before
    time.sleep(1.7)
    assert probabilities(studio.score(ep["ApiLocation"], ep["PrimaryKey"], rows).json()) != before
