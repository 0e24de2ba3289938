"""azure.yaml, and the postdeploy hook that subscribes Event Grid to the blob triggers, run with a stand-in `az` on
PATH: it answers from the code's own function metadata (as `az functionapp function list` reports a deployed app)
and keeps the subscriptions it is sent by name, as Azure does for a PUT."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.bicep import ROOT, indexed_functions, parsed

SCRIPT = ROOT / "scripts" / "subscribe-blob-events.sh"
KEY = "blobs-extension-key-0123456789"
FAKE_AZ = textwrap.dedent('''\
    #!{python}
    """A stand-in Azure CLI: records each call; answers what subscribe-blob-events.sh asks."""
    import json, os, sys
    from pathlib import Path
    state = Path(os.environ["FAKE_AZ_STATE"])
    data = json.loads(state.read_text()) if state.exists() else {{"calls": [], "subscriptions": {{}}}}
    args = sys.argv[1:]
    data["calls"].append(args)
    out = ""
    if args[:3] == ["functionapp", "keys", "list"]:
        out = os.environ["FAKE_AZ_KEY"]
    elif args[:2] == ["functionapp", "show"]:
        out = "func-retrain-test.azurewebsites.net"
    elif args[:3] == ["functionapp", "function", "list"]:
        out = Path(os.environ["FAKE_AZ_FUNCTIONS"]).read_text()
    elif args[:1] == ["rest"]:
        opts = dict(zip(args[1::2], args[2::2]))
        assert opts["--method"] == "put", opts
        data["subscriptions"][opts["--url"]] = json.loads(opts["--body"])
    elif args[:2] == ["account", "show"]:
        out = "00000000-0000-0000-0000-00000000feed"
    else:
        sys.exit("fake az: unexpected call " + " ".join(args))
    state.write_text(json.dumps(data))
    if out:
        print(out)
''')


def function_list_tsv(functions: list[dict[str, Any]]) -> str:
    """What `az functionapp function list --query "[].[name, config.bindings[?type=='blobTrigger'] | [0].path]"
    -o tsv` prints for these functions ("None" where a function has no blob trigger)."""
    lines = []
    for fn in functions:
        paths = [b.get("path") for b in fn["bindings"] if b["type"] == "blobTrigger"]
        lines.append(f"func-retrain-test/{fn['name']}\t{paths[0] if paths else 'None'}")
    return "\n".join(lines)


@pytest.fixture
def fake_az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable))
    az.chmod(az.stat().st_mode | stat.S_IXUSR)
    functions = tmp_path / "functions.tsv"
    functions.write_text(function_list_tsv(indexed_functions()))
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AZ_STATE": str(tmp_path / "state.json"),
            "FAKE_AZ_KEY": KEY, "FAKE_AZ_FUNCTIONS": str(functions), "RESOURCE_GROUP": "rg-test",
            "AZURE_FUNCTION_APP_NAME": "func-retrain-test", "EVENTGRID_SYSTEM_TOPIC_NAME": "evgt-blobs-test",
            "AZURE_STORAGE_ACCOUNT_ID": "/subscriptions/s/resourceGroups/rg-test/providers/"
                                        "Microsoft.Storage/storageAccounts/sttest",
            "EVENTGRID_DEADLETTER_CONTAINER": "eventgrid-deadletter", "HOME": str(tmp_path)}


def run_hook(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def state(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(Path(env["FAKE_AZ_STATE"]).read_text()))


def blob_triggers() -> dict[str, str]:
    return {fn["name"]: b["path"] for fn in indexed_functions() for b in fn["bindings"] if b["type"] == "blobTrigger"}


def test_one_subscription_per_blob_trigger_filtered_to_its_path_and_idempotent(fake_az):
    first = run_hook(fake_az)
    assert first.returncode == 0, first.stderr
    after_one = state(fake_az)["subscriptions"]
    triggers = blob_triggers()
    assert len(triggers) == 2 and len(after_one) == len(triggers)
    for name, path in triggers.items():
        container, pattern = path.split("/", 1)
        (url, body), = [(u, b) for u, b in after_one.items() if f"Host.Functions.{name}&" in
                         b["properties"]["destination"]["properties"]["endpointUrl"]]
        assert "/systemTopics/evgt-blobs-test/eventSubscriptions/" in url and "api-version=" in url
        props = body["properties"]
        assert props["destination"]["endpointType"] == "WebHook"
        assert props["destination"]["properties"]["endpointUrl"] == (
            f"https://func-retrain-test.azurewebsites.net/runtime/webhooks/blobs?functionName=Host.Functions."
            f"{name}&code={KEY}")
        assert props["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
        assert props["filter"]["subjectBeginsWith"] == f"/blobServices/default/containers/{container}/blobs/"
        suffix = re.sub(r"^.*\}", "", pattern) if "}" in pattern else ""
        assert props["filter"].get("subjectEndsWith", "") == suffix
        assert props["retryPolicy"]["maxDeliveryAttempts"] >= 10
        dead = props["deadLetterWithResourceIdentity"]
        assert dead["deadLetterDestination"]["properties"]["blobContainerName"] == "eventgrid-deadletter"
    assert after_one and any(b["properties"]["filter"].get("subjectEndsWith") == ".ilearner"
                             for b in after_one.values())
    second = run_hook(fake_az)
    assert second.returncode == 0, second.stderr
    assert state(fake_az)["subscriptions"] == after_one, "a second run leaves the same subscriptions"
    puts = [c for c in state(fake_az)["calls"] if c[0] == "rest"]
    assert len(puts) == 2 * len(triggers)
    assert KEY not in first.stdout + first.stderr + second.stdout + second.stderr, "the key is never printed"


def test_the_hook_follows_the_code_a_trigger_removed_is_not_subscribed(fake_az):
    """The subscriptions come from the deployed app's triggers: with one trigger gone, one subscription."""
    only_training = [fn for fn in indexed_functions() if fn["name"] != "model_landed"]
    Path(fake_az["FAKE_AZ_FUNCTIONS"]).write_text(function_list_tsv(only_training))
    assert run_hook(fake_az).returncode == 0
    bodies = list(state(fake_az)["subscriptions"].values())
    assert len(bodies) == 1 and "training_data_landed" in json.dumps(bodies[0])


def test_the_hook_refuses_to_run_without_the_azd_environment(fake_az):
    env = {k: v for k, v in fake_az.items() if k != "EVENTGRID_SYSTEM_TOPIC_NAME"}
    done = run_hook(env)
    assert done.returncode == 1 and "EVENTGRID_SYSTEM_TOPIC_NAME is not set" in done.stderr


def test_azure_yaml_names_the_function_service_the_infra_and_the_hook():
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (name, service), = spec["services"].items()
    assert service["host"] == "function" and service["language"] == "python"
    assert (ROOT / service["project"] / "function_app.py").exists()
    site_tags = json.dumps(parsed("app/function.bicep")["resources"]["site"]["config"]["tags"])
    assert f"'azd-service-name': '{name}'" in site_tags or f'"{name}"' in site_tags
    hook = spec["hooks"]["postdeploy"]["posix"]
    assert (ROOT / hook["run"]).resolve() == SCRIPT and hook["shell"] == "sh"
    assert (ROOT / spec["infra"]["path"] / f"{spec['infra']['module']}.bicep").exists()
    outputs = parsed("main.bicep")["outputs"]
    used = set(re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", SCRIPT.read_text()))
    needed = {"RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "EVENTGRID_SYSTEM_TOPIC_NAME", "AZURE_STORAGE_ACCOUNT_ID",
              "EVENTGRID_DEADLETTER_CONTAINER"}
    assert needed <= used and needed <= set(outputs), sorted(needed - set(outputs))
