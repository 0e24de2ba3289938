"""The whole flow with no key in the app: Azurite over HTTPS in OAuth mode, the app configured only with
`AzureWebJobsStorage__blobServiceUri/__queueServiceUri/__tableServiceUri` and a user-assigned managed identity
(tokens from the platform's identity endpoint - the emulator's stand-in), events published to a topic that refuses
keys. Blob triggers, the ledger, rejected/ moves, the poison queue and the user-delegation SAS the emulator
downloads the model with all run here as they would in Azure."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import leaked_secrets
from tests.e2e.conftest import Client, host_environment, start_stack
from tools.emulator.census import csv_text
from tools.localdev.azurite import ACCOUNT_KEY

KEYED = ("AzureWebJobsStorage", "RETRAIN_EVENTGRID_KEY")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    stack = start_stack("identity", identity=True, RETRAIN_JOB_POLL_SECONDS="0.2", RETRAIN_HTTP_MAX_ATTEMPTS="2",
                        AzureFunctionsJobHost__extensions__queues__visibilityTimeout="00:00:00",
                        AzureFunctionsJobHost__extensions__blobs__poisonBlobThreshold="2")
    try:
        yield Client(stack)
    finally:
        stack.stop()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the host's environment from /proc")
def test_no_account_key_or_topic_key_anywhere_in_the_apps_settings_or_environment(client):
    settings_text = Path(str(client.stack.local_settings)).read_text()
    env = host_environment(client.stack)
    for where, text in (("local.settings.json", settings_text),
                        ("the host's environment", "\n".join(f"{k}={v}" for k, v in env.items()
                                                             if k not in os.environ or os.environ[k] != v))):
        assert ACCOUNT_KEY not in text and "AccountKey=" not in text, where
        assert client.m["eventgrid"]["topic_key"] not in text, where
    values = json.loads(settings_text)["Values"]
    assert not [k for k in KEYED if k in values]
    assert values["AzureWebJobsStorage__blobServiceUri"].startswith("https://")
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"


def test_a_dropped_csv_is_deployed_with_a_user_delegation_sas_and_events_sent_with_a_bearer_token(client):
    name = client.new_endpoint("mi")
    before = client.serving(name)
    client.upload("training-data", f"{name}/fresh.csv", csv_text(2000, seed=31, drift=1.0).encode())

    def deployed():
        top = client.call("GET", f"endpoints/{name}").json()["history"][0]
        return top if top["operation"] == "promote" and top["outcome"] == "Deployed" else None

    top = client.wait_for("the promotion", deployed, timeout=120)
    assert client.serving(name) == top["modelPath"] != before
    # The emulator downloaded the model through the SAS the app minted: a user-delegation SAS (signed with a
    # delegation key of the app's identity: skoid/sktid), never an account-key SAS.
    seen = client.http.get(f"{client.m['admin_url']}/identity/sas-seen", timeout=10).json()
    identity = client.m["identity"]
    model_sas = [s for s in seen if s.get("sr") == "b" and s.get("sp") == "r"]
    assert model_sas, seen
    for sas in model_sas:
        assert {"skoid", "sktid", "skt", "ske", "sks", "skv"} <= set(sas["fields"]), sas
        assert (sas["skoid"], sas["sktid"]) == (identity["principal_id"], identity["tenant_id"])
    # Every event reached the topic with an Entra ID token (the topic refuses keys). The EndpointUpdated is sent just
    # after the ledger takes the pointer (usecases/outcomes.record_outcomes: store, write, send): waited for.
    def received() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = client.http.get(f"{client.m['admin_url']}/eventgrid/topics/retrain/events",
                                                    timeout=10).json()
        return got

    client.wait_for("the EndpointUpdated event", lambda: [
        r for r in received() if r["event"].get("data", {}).get("endpoint") == name
        and r["event"]["type"] == "Retrain.EndpointUpdated"])
    assert {r["auth"] for r in received()} == {"bearer"}
    issued = client.http.get(f"{client.m['admin_url']}/identity/issued", timeout=10).json()
    assert issued.get("https://storage.azure.com") and issued.get("https://eventgrid.azure.net")


def test_the_topic_refuses_its_key_when_local_auth_is_disabled(client):
    resp = client.http.post(client.m["eventgrid"]["topic_endpoint"], json=[],
                            headers={"aeg-sas-key": client.m["eventgrid"]["topic_key"]}, timeout=10)
    assert resp.status_code == 401 and "disabled" in resp.json()["error"]["message"]


def test_a_bad_csv_is_moved_to_rejected_with_its_reason(client):
    name = client.new_endpoint("mibad")
    client.upload("training-data", f"{name}/bad.csv", b"age,income\n1,>50K\n")
    client.wait_for("the rejection", lambda: client.exists("rejected", f"training-data/{name}/bad.csv.reason.json"))
    reason = json.loads(client.read("rejected", f"training-data/{name}/bad.csv.reason.json"))
    assert reason["source"] == f"training-data/{name}/bad.csv"
    assert client.read("rejected", f"training-data/{name}/bad.csv") == b"age,income\n1,>50K\n"
    client.wait_for("the source to go", lambda: not client.exists("training-data", f"{name}/bad.csv"))


def test_a_failing_blob_is_poisoned_and_taken_from_the_poison_queue_through_the_identity(client):
    """The poison message is written and read (blob_poisoned's queue trigger) with the identity: no key."""
    name = client.new_endpoint("mipoison")
    fault = {"route": "bes.submit", "status": 503, "retry_after": 0, "count": 1000}
    created = client.http.post(f"{client.m['admin_url']}/faults", json=fault, timeout=10)
    assert created.status_code == 201
    path = client.stack.workdir / "functions.log"
    try:
        client.upload("training-data", f"{name}/never.csv", csv_text(300, seed=9).encode())

        def ended() -> str | None:
            """How blob_poisoned's invocation for this file ended: the host logs it just after the function's own
            last line (`poisoned blob ...`), so a read between the two sees only the first."""
            text = path.read_text()
            at = text.find(f"poisoned blob training-data/{name}/never.csv:")
            found = re.search(r"Executed 'Functions\.blob_poisoned' \((\w+)", text[at:]) if at >= 0 else None
            return found.group(1) if found else None

        assert client.wait_for("the poison message taken", ended, timeout=120) == "Succeeded"
    finally:
        client.http.delete(f"{client.m['admin_url']}/faults", timeout=10)
    assert client.exists("training-data", f"{name}/never.csv")


def test_nothing_secret_in_the_logs(client):
    assert not leaked_secrets(client.stack.host_log_tail(100_000))
    assert not leaked_secrets((client.stack.workdir / "emulator" / "emulator.log").read_text())
