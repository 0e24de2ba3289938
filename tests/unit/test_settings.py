"""Settings: defaults, flat and JSON targets, and errors that name the setting."""

from __future__ import annotations

import json

import pytest

from shared.settings import SettingsError, load_settings

BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "RETRAIN_BES_URL": "https://ussouthcentral.services.azureml.net/workspaces/w/services/s/jobs?api-version=2.0",
    "RETRAIN_BES_KEY": "bes-key-123456",
    "RETRAIN_MANAGEMENT_URL": "https://management.azureml.net/workspaces/w/webservices/svc",
    "RETRAIN_MANAGEMENT_KEY": "mgmt-key-123456",
    "RETRAIN_RESOURCE_NAME": "Census Model [trained model]",
}


def test_flat_settings_make_one_target_with_defaults():
    s = load_settings(dict(BASE, RETRAIN_ENDPOINTS="a, b"))
    (target,) = s.targets
    assert target.endpoints == ["a", "b"] and target.tenant_routing
    assert s.bes_for(target)[0] == "https://ussouthcentral.services.azureml.net/workspaces/w/services/s"
    assert s.gate_metric == "AUC" and s.gate_minimum == 0.7 and s.sas_minutes == 60
    assert s.allowed_hosts == {"management.azureml.net", "ussouthcentral.services.azureml.net"}
    assert "mgmt-key" not in repr(s)


def test_json_targets():
    targets = [{"name": "census", "management_url": BASE["RETRAIN_MANAGEMENT_URL"], "management_key": "k1234567",
                "resource_name": "R", "endpoints": ["x"], "data_prefix": "census"},
               {"name": "other", "management_url": "https://management.azureml.net/workspaces/w/webservices/o",
                "management_key": "k7654321", "resource_name": "R2", "bes_url": "https://h/workspaces/a/services/b",
                "bes_key": "other-bes-key"}]
    env = {k: v for k, v in BASE.items() if not k.startswith("RETRAIN_MANAGEMENT") and k != "RETRAIN_RESOURCE_NAME"}
    s = load_settings(dict(env, RETRAIN_TARGETS=json.dumps(targets)))
    assert [t.name for t in s.targets] == ["census", "other"]
    assert s.target("census").data_prefix == "census/"
    assert s.bes_for(s.target("other"))[0] == "https://h/workspaces/a/services/b"
    assert "h" in s.allowed_hosts


@pytest.mark.parametrize(("change", "needle"), [
    ({"RETRAIN_GATE_MINIMUM": "high"}, "RETRAIN_GATE_MINIMUM"),
    ({"RETRAIN_TARGETS": "[{"}, "RETRAIN_TARGETS: not valid JSON"),
    ({"RETRAIN_MANAGEMENT_KEY": ""}, "RETRAIN_MANAGEMENT_KEY is required"),
    ({"RETRAIN_BES_KEY": ""}, "RETRAIN_BES_KEY is required"),
    ({"RETRAIN_MANAGEMENT_URL": "https://management.azureml.net/nope"}, "RETRAIN_MANAGEMENT_URL"),
    ({"RETRAIN_BES_URL": "ftp://x"}, "RETRAIN_BES_URL"),
    ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage"),
    ({"RETRAIN_SMOKE_ROW": "[1]"}, "RETRAIN_SMOKE_ROW: expected a JSON object"),
    ({"RETRAIN_PATCH_CONCURRENCY": "0"}, "RETRAIN_PATCH_CONCURRENCY"),
])
def test_bad_settings_name_the_setting(change, needle):
    env = dict(BASE, **change)
    env = {k: v for k, v in env.items() if v != "" or k in ("RETRAIN_MANAGEMENT_KEY", "RETRAIN_BES_KEY")}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert needle in str(info.value)
    assert "mgmt-key-123456" not in str(info.value) and "bes-key-123456" not in str(info.value)


def test_development_storage_gives_the_account_key_and_jobs_get_blob_scoped_grants_never_the_key():
    """A job's inputs are read-only grants and its outputs create/write grants, each for one blob and the policy's
    lifetime; the account key itself never leaves the app (it was a connection string once)."""
    from datetime import UTC, datetime, timedelta
    from urllib.parse import parse_qs

    from shared.adapters.storage import Storage
    from shared.ports.blobs import SasPurpose
    from shared.records import BlobRef
    from shared.settings import load_settings

    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RETRAIN_BES_URL": "http://127.0.0.1:1/w/s",
           "RETRAIN_BES_KEY": "k" * 10, "RETRAIN_MANAGEMENT_URL": "http://127.0.0.1:1/workspaces/w/webservices/s",
           "RETRAIN_MANAGEMENT_KEY": "k" * 10, "RETRAIN_RESOURCE_NAME": "r", "RETRAIN_JOB_DEADLINE_MINUTES": "30"}
    storage = Storage(load_settings(env))
    assert storage.account_key is not None and storage.account_key.startswith("Eby8")
    ref = BlobRef("training-data", "a/b.csv")
    read, write = storage.grant(ref, SasPurpose.JOB_INPUT), storage.grant(ref, SasPurpose.JOB_OUTPUT)
    for grant in (read, write):
        assert grant.path == "training-data/a/b.csv" and ":10000/" in grant.base
        assert storage.account_key not in grant.token and "AccountKey" not in grant.token
        fields = parse_qs(grant.token.lstrip("?"))
        assert fields["sr"] == ["b"]  # one blob, not the container
        expiry = datetime.fromisoformat(fields["se"][0].replace("Z", "+00:00"))
        assert timedelta(minutes=85) < expiry - datetime.now(UTC) <= timedelta(minutes=90)  # deadline + 1 h
    assert parse_qs(read.token.lstrip("?"))["sp"] == ["r"]
    assert parse_qs(write.token.lstrip("?"))["sp"] == ["cw"]


def test_a_classic_target_in_retrain_targets_takes_the_app_wide_management_key_when_it_names_none():
    """Multi-target classic settings can keep the key in Key Vault (RETRAIN_MANAGEMENT_KEY), not in the JSON."""
    import json

    import pytest

    from shared.settings import SettingsError, load_settings

    target = {"name": "t", "management_url": "http://127.0.0.1:1/workspaces/w/webservices/s", "resource_name": "r"}
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RETRAIN_BES_URL": "http://127.0.0.1:1/w/s",
           "RETRAIN_BES_KEY": "k" * 10, "RETRAIN_TARGETS": json.dumps([target])}
    with pytest.raises(SettingsError, match="RETRAIN_MANAGEMENT_KEY is required"):
        load_settings(env)
    settings = load_settings({**env, "RETRAIN_MANAGEMENT_KEY": "app-wide-key"})
    assert settings.management_key_for(settings.targets[0]).get_secret_value() == "app-wide-key"
    own = load_settings({**env, "RETRAIN_MANAGEMENT_KEY": "app-wide-key",
                         "RETRAIN_TARGETS": json.dumps([{**target, "management_key": "its-own"}])})
    assert own.management_key_for(own.targets[0]).get_secret_value() == "its-own"
