"""azure.yaml and its hooks, run against a stand-in `az` on PATH.

The stand-in answers `az rest` the way ARM does for what the postdeploy hook asks: before the host is synced its
function list holds only `WarmUp` (as on Flex Consumption right after a deployment), after a `syncfunctiontriggers`
POST the functions the code declares (from the code's own metadata); `host/default/listkeys` returns extension keys
containing `+`, `/` and `=`; PUT subscriptions are kept by URL. Every call's command line is recorded, so a key on
one shows. Each check is also shown to fail on a planted defect (a copy of the hook with the defect written in).
"""

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
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.infra.bicep import EXAMPLE_ENV, ROOT, indexed_functions, parsed

HOOK = ROOT / "scripts" / "postdeploy.py"
PREPROVISION = ROOT / "scripts" / "preprovision.py"
BLOB_KEY = "bl+ob/Key==ab/c+d="
GRID_KEY = "ev+ent/gridKey=="
SUB = "00000000-0000-0000-0000-00000000feed"
ML_TOPIC = "/subscriptions/s/resourceGroups/rg-ml/providers/Microsoft.EventGrid/systemTopics/evgt-aml-test"
FAKE_AZ = textwrap.dedent('''\
    #!{python}
    """A stand-in Azure CLI: records each call; answers what the hooks ask, as ARM would."""
    import json, os, sys
    from pathlib import Path
    state = Path(os.environ["FAKE_AZ_STATE"])
    data = json.loads(state.read_text()) if state.exists() else {{"calls": [], "subscriptions": {{}}, "synced": 0}}
    args = sys.argv[1:]
    data["calls"].append(args)
    out = None
    if args[:1] == ["rest"]:
        opts = dict(zip(args[1::2], args[2::2]))
        method, url = opts["--method"].lower(), opts["--url"]
        path = url.split("?")[0]
        if method == "post" and path.endswith("/syncfunctiontriggers"):
            data["synced"] += 1
        elif method == "get" and path.endswith("/functions"):
            # Only WarmUp until a sync, and for one more look after it (the host takes a moment).
            real = json.loads(Path(os.environ["FAKE_AZ_FUNCTIONS"]).read_text())
            never = os.environ.get("FAKE_AZ_NEVER_SYNCS") == "1"
            data["looks_after_sync"] = data.get("looks_after_sync", 0) + (1 if data["synced"] else 0)
            ready = data["looks_after_sync"] >= 2 and not never
            shown = real if ready else [{{"name": "WarmUp", "bindings": []}}]
            out = {{"value": [{{"name": "func-retrain-test/" + f["name"],
                               "properties": {{"name": f["name"], "config": {{"bindings": f["bindings"]}}}}}}
                              for f in shown]}}
        elif method == "post" and path.endswith("/host/default/listkeys"):
            out = {{"masterKey": "m", "functionKeys": {{"default": "f"}},
                   "systemKeys": {{"blobs_extension": os.environ["FAKE_AZ_BLOB_KEY"],
                                  "eventgrid_extension": os.environ["FAKE_AZ_GRID_KEY"]}}}}
        elif method == "get" and path.endswith("/config/configreferences/appsettings"):
            out = {{"value": [{{"name": "RETRAIN_BES_KEY", "properties": {{"status": "Resolved"}}}}]}}
        elif method == "get" and "/providers/Microsoft.Web/sites/" in path:
            out = {{"properties": {{"defaultHostName": "func-retrain-test.azurewebsites.net"}}}}
        elif method == "put" and "/eventSubscriptions/" in path:
            body = opts["--body"]
            body = Path(body[1:]).read_text() if body.startswith("@") else body
            data["subscriptions"][url] = json.loads(body)
            out = data["subscriptions"][url]
        else:
            sys.exit("fake az: unexpected call " + " ".join(args))
    elif args[:2] == ["account", "show"]:
        out = "{sub}"
    elif args[:2] == ["functionapp", "list-flexconsumption-locations"]:
        out = ["East US", "West Europe", "Sweden Central"]
    else:
        sys.exit("fake az: unexpected call " + " ".join(args))
    state.write_text(json.dumps(data))
    if out is not None:
        print(out if isinstance(out, str) else json.dumps(out))
''')


def arm_functions(functions: list[dict[str, Any]]) -> str:
    return json.dumps([{"name": f["name"], "bindings": f["bindings"]} for f in functions])


@pytest.fixture
def fake_az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable, sub=SUB))
    az.chmod(az.stat().st_mode | stat.S_IXUSR)
    functions = tmp_path / "functions.json"
    functions.write_text(arm_functions(indexed_functions()))
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AZ_STATE": str(tmp_path / "state.json"),
            "FAKE_AZ_BLOB_KEY": BLOB_KEY, "FAKE_AZ_GRID_KEY": GRID_KEY, "FAKE_AZ_FUNCTIONS": str(functions),
            "RESOURCE_GROUP": "rg-test", "AZURE_FUNCTION_APP_NAME": "func-retrain-test",
            "EVENTGRID_SYSTEM_TOPIC_NAME": "evgt-blobs-test", "AZURE_SUBSCRIPTION_ID": SUB,
            "AZURE_STORAGE_ACCOUNT_ID": "/subscriptions/s/resourceGroups/rg-test/providers/"
                                        "Microsoft.Storage/storageAccounts/sttest",
            "EVENTGRID_DEADLETTER_CONTAINER": "eventgrid-deadletter", "HOME": str(tmp_path),
            "POSTDEPLOY_TIMEOUT_SECONDS": "3", "POSTDEPLOY_POLL_SECONDS": "0.05"}


def run(script: Path, env: dict[str, str], shell: bool = True) -> subprocess.CompletedProcess[str]:
    """As azure.yaml's posix entry runs it: `python3 scripts/<hook>.py` under sh, from the project root."""
    python = str(Path(sys.executable))
    command = ["sh", "-c", f'"{python}" "{script}"'] if shell else [python, str(script)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def state(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(Path(env["FAKE_AZ_STATE"]).read_text()))


def blob_triggers() -> dict[str, str]:
    return {fn["name"]: b["path"] for fn in indexed_functions() for b in fn["bindings"] if b["type"] == "blobTrigger"}


def check_run(env: dict[str, str], done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """What a correct run leaves: synced before subscribing, one subscription per blob trigger filtered to its path,
    the key percent-encoded in the webhook URL and on no command line, nothing printed with it."""
    assert done.returncode == 0, done.stderr
    seen = state(env)
    assert seen["synced"] >= 1, "the host's triggers were synced"
    subscriptions = seen["subscriptions"]
    blob_subs = {u: b for u, b in subscriptions.items() if "/systemTopics/evgt-blobs-test/" in u}
    assert len(blob_subs) == len(blob_triggers()) == 2
    for name, path in blob_triggers().items():
        container, pattern = path.split("/", 1)
        (url, body), = [(u, b) for u, b in blob_subs.items()
                        if f"Host.Functions.{name}&" in b["properties"]["destination"]["properties"]["endpointUrl"]]
        endpoint = body["properties"]["destination"]["properties"]["endpointUrl"]
        parts = urlsplit(endpoint)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "func-retrain-test.azurewebsites.net",
                                                            "/runtime/webhooks/blobs")
        assert parse_qs(parts.query) == {"functionName": [f"Host.Functions.{name}"], "code": [BLOB_KEY]}, (
            "the key must come back whole from the URL: percent-encoded")
        props = body["properties"]
        assert props["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
        assert props["filter"]["subjectBeginsWith"] == f"/blobServices/default/containers/{container}/blobs/"
        suffix = re.sub(r"^.*\}", "", pattern) if "}" in pattern else ""
        assert props["filter"].get("subjectEndsWith", "") == suffix
        assert props["deadLetterWithResourceIdentity"]["deadLetterDestination"]["properties"][
            "blobContainerName"] == "eventgrid-deadletter"
        assert "api-version=" in url
    for args in seen["calls"]:
        line = " ".join(args)
        assert BLOB_KEY not in line and GRID_KEY not in line and "bl%2Bob" not in line, (
            f"a key on a command line: {line[:200]}")
    assert ["functionapp", "keys", "list"] not in [c[:3] for c in seen["calls"]], "keys through the REST call"
    assert BLOB_KEY not in done.stdout + done.stderr and "bl%2Bob" not in done.stdout + done.stderr
    first_put = next(i for i, c in enumerate(seen["calls"]) if "put" in c)
    first_sync = next(i for i, c in enumerate(seen["calls"]) if any("syncfunctiontriggers" in a for a in c))
    assert first_sync < first_put
    return dict(subscriptions)


def test_syncs_waits_past_warmup_and_subscribes_each_blob_trigger_idempotently(fake_az):
    first = run(HOOK, fake_az)
    after_one = check_run(fake_az, first)
    assert "WarmUp" in first.stdout, "it saw only WarmUp first and waited"
    second = run(HOOK, fake_az)
    assert check_run(fake_az, second) == after_one, "a second run leaves the same subscriptions"


def test_subscribes_the_azure_ml_job_events_when_a_workspace_is_configured(fake_az, tmp_path):
    env = {**fake_az, "AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID": ML_TOPIC}
    subscriptions = check_run(env, run(HOOK, env))
    (_url, body), = [(u, b) for u, b in subscriptions.items() if ML_TOPIC in u]
    assert body["properties"]["filter"]["includedEventTypes"] == [
        "Microsoft.MachineLearningServices.RunCompleted", "Microsoft.MachineLearningServices.RunStatusChanged"]
    parts = urlsplit(body["properties"]["destination"]["properties"]["endpointUrl"])
    assert parts.path == "/runtime/webhooks/eventgrid"
    assert parse_qs(parts.query) == {"functionName": ["azureml_job_event"], "code": [GRID_KEY]}
    # Code without the trigger (a copy of the app with its registration taken out): refused, nothing subscribed.
    root = tmp_path / "app"
    (root / "blueprints").mkdir(parents=True)
    for path in [ROOT / "function_app.py", *(ROOT / "blueprints").glob("*.py")]:
        (root / path.relative_to(ROOT)).write_text(path.read_text())
    (root / "blueprints" / "azureml_events.py").unlink()
    app = (root / "function_app.py").read_text()
    (root / "function_app.py").write_text(app.replace("azureml_events, ", "").replace(
        "app.register_functions(azureml_events.bp)\n", ""))
    (root / "scripts").mkdir()
    (root / "scripts" / "postdeploy.py").write_text(HOOK.read_text())
    fresh = {**env, "FAKE_AZ_STATE": str(tmp_path / "fresh.json")}
    without = run(root / "scripts" / "postdeploy.py", fresh)
    assert without.returncode == 1 and "declares no Event Grid trigger named azureml_job_event" in without.stderr


def test_gives_up_within_its_bound_naming_what_never_appeared(fake_az):
    done = run(HOOK, {**fake_az, "FAKE_AZ_NEVER_SYNCS": "1"})
    assert done.returncode == 1
    assert "still lists ['WarmUp'], not ['model_landed', 'training_data_landed']" in done.stderr
    assert state(fake_az)["subscriptions"] == {}


def test_the_hook_reads_the_triggers_the_code_declares():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import postdeploy
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    declared = postdeploy.declared_triggers()
    indexed = {fn["name"]: fn["bindings"] for fn in indexed_functions()}
    for name, trigger in declared.items():
        (binding,) = [b for b in indexed[name] if b["type"] == trigger["type"]]
        assert binding.get("path") == trigger.get("path")
    event_triggers = {n for n, b in indexed.items() if any(x["type"] in ("blobTrigger", "eventGridTrigger")
                                                          for x in b)}
    assert set(declared) == event_triggers, "the hook's reading of the code matches the host's indexing"


def planted_hook(tmp_path: Path, old: str, new: str) -> Path:
    text = HOOK.read_text()
    assert old in text, old
    path = tmp_path / "planted_postdeploy.py"
    path.write_text(text.replace(old, new).replace("ROOT = Path(__file__).resolve().parents[1]",
                                                   f"ROOT = Path({str(ROOT)!r})"))
    return path


@pytest.mark.parametrize(("old", "new", "caught"), [
    ('rest("post", f"{ARM}{site}/syncfunctiontriggers?api-version={WEB_API}")', "pass", "still lists ['WarmUp']"),
    ("&code={quote(key, safe='')}", "&code={key}", "percent-encoded"),
    ('out = az(*args, "--body", f"@{path}", "--headers", "Content-Type=application/json")',
     'out = az(*args, "--body", json.dumps(body))', "a key on a command line"),
])
def test_each_check_fails_on_a_planted_defect(fake_az, tmp_path, old, new, caught):
    done = run(planted_hook(tmp_path, old, new), fake_az)
    with pytest.raises(AssertionError, match=re.escape(caught)):
        check_run(fake_az, done)


def test_the_hook_refuses_to_run_without_the_azd_environment(fake_az):
    env = {k: v for k, v in fake_az.items() if k != "EVENTGRID_SYSTEM_TOPIC_NAME"}
    done = run(HOOK, env)
    assert done.returncode == 1 and "EVENTGRID_SYSTEM_TOPIC_NAME not set" in done.stderr


def test_preprovision_refuses_before_anything_is_created(fake_az):
    ok = run(PREPROVISION, {**fake_az, **EXAMPLE_ENV})
    assert ok.returncode == 0, ok.stderr
    cases = {
        "AZURE_LOCATION": ("brazilsouth", "brazilsouth has no Flex Consumption plan"),
        "RETRAIN_GATE": ("{not json", "RETRAIN_GATE is not JSON"),
        "RETRAIN_RESOURCE_NAME": ('Census "Model"', "RETRAIN_RESOURCE_NAME holds a double quote"),
        "AZURE_ML_WORKSPACE_ID": ("/subscriptions/x/resourceGroups/rg/providers/Other/things/y",
                                  "must be a workspace's ARM id"),
        "RETRAIN_TARGETS": (json.dumps([{"name": "a", "kind": "classic", "management_key": "secret"}]),
                            "keys go in RETRAIN_BES_KEY"),
    }
    for name, (value, message) in cases.items():
        done = run(PREPROVISION, {**fake_az, **EXAMPLE_ENV, name: value})
        assert done.returncode == 1 and message in done.stderr, (name, done.stderr)
        assert "nothing was created" in done.stderr
    no_target = {k: v for k, v in {**fake_az, **EXAMPLE_ENV}.items() if k != "RETRAIN_TARGETS"}
    assert "no target" in run(PREPROVISION, no_target).stderr
    no_workspace = {k: v for k, v in {**fake_az, **EXAMPLE_ENV}.items() if k != "AZURE_ML_WORKSPACE_ID"}
    assert "set AZURE_ML_WORKSPACE_ID" in run(PREPROVISION, no_workspace).stderr


def test_azure_yaml_runs_the_same_hooks_on_posix_and_windows():
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (name, service), = spec["services"].items()
    assert service["host"] == "function" and service["language"] == "python"
    assert (ROOT / service["project"] / "function_app.py").exists()
    site_tags = json.dumps(parsed("app/function.bicep")["resources"]["site"]["config"]["tags"])
    assert f"'azd-service-name': '{name}'" in site_tags or f'"{name}"' in site_tags
    for hook, script in (("preprovision", PREPROVISION), ("postdeploy", HOOK)):
        entry = spec["hooks"][hook]
        assert set(entry) == {"posix", "windows"}, "azd on Windows validates an empty run otherwise"
        assert entry["posix"]["shell"] == "sh" and entry["windows"]["shell"] == "pwsh"
        for platform in ("posix", "windows"):
            assert f"scripts/{script.name}" in entry[platform]["run"] and not entry[platform]["continueOnError"]
        assert "exit $LASTEXITCODE" in entry["windows"]["run"], "PowerShell passes the hook's failure on"
    assert (ROOT / spec["infra"]["path"] / f"{spec['infra']['module']}.bicep").exists()
    outputs = parsed("main.bicep")["outputs"]
    text = HOOK.read_text()
    needed = {"RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "EVENTGRID_SYSTEM_TOPIC_NAME", "AZURE_STORAGE_ACCOUNT_ID",
              "EVENTGRID_DEADLETTER_CONTAINER", "AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID"}
    assert all(n in text for n in needed) and needed <= set(outputs), sorted(needed - set(outputs))
