"""azd postdeploy hook: connect Event Grid to the deployed function app's event triggers.

1. Reads the triggers the app's own code declares (its blueprints, parsed - nothing is imported, so the app's
   packages need not be installed here): every Event Grid-source blob trigger, and `azureml_job_event` (an Event
   Grid trigger) when an Azure ML workspace is configured.
2. Syncs the host's triggers (ARM `syncfunctiontriggers`) and waits, bounded, until ARM lists every one of them: on
   Flex Consumption the list can show only `WarmUp` right after a deployment until the host is synced.
3. Reads the extension keys through ARM (`host/default/listkeys`, not `az functionapp keys list`) and PUTs one Event
   Grid subscription per trigger: the storage account's system topic -> each blob trigger's webhook
   (`/runtime/webhooks/blobs?functionName=Host.Functions.<fn>&code=<key>`), filtered to BlobCreated in its container
   (and path suffix), retried for a day, dead-lettered to a container; the Azure ML workspace's system topic ->
   `/runtime/webhooks/eventgrid?functionName=<fn>&code=<key>` for RunCompleted and RunStatusChanged. The key is
   percent-encoded and goes to `az` in a request-body file, never on a command line.
4. Checks that the app's Key Vault references resolved (a reference that did not reaches the app as its literal
   text, which the app refuses).

Idempotent: subscriptions are PUT by name. Needs `az` (signed in) and the azd environment's values in the
environment (azd passes them to hooks). Python 3.9+, standard library only; the same file runs on Linux, macOS
and Windows (azure.yaml's posix and windows entries).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
WEB_API = "2024-04-01"
EVENTGRID_API = "2025-02-15"
ARM = "https://management.azure.com"
REQUIRED = ("RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "EVENTGRID_SYSTEM_TOPIC_NAME", "AZURE_STORAGE_ACCOUNT_ID",
            "EVENTGRID_DEADLETTER_CONTAINER")
AZUREML_FUNCTION = "azureml_job_event"
AZUREML_EVENTS = ["Microsoft.MachineLearningServices.RunCompleted",
                  "Microsoft.MachineLearningServices.RunStatusChanged"]


class HookError(Exception):
    """A reason to stop, said plainly."""


def say(message: str) -> None:
    print(f"postdeploy: {message}", flush=True)


# ---- what the code declares ---------------------------------------------------------------------------------------
def _decorator_call(node: ast.expr) -> tuple[str, ast.Call] | None:
    """`@bp.blob_trigger(...)` -> ("blob_trigger", call)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr, node
    return None


def _keyword(call: ast.Call, name: str, position: int | None = None) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _text(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_event_grid_source(node: ast.expr | None) -> bool:
    """`source=func.BlobSource.EVENT_GRID` or `source="EventGrid"`."""
    if isinstance(node, ast.Attribute):
        return node.attr == "EVENT_GRID"
    return _text(node) == "EventGrid"


def declared_triggers(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """{function name: {"type": "blobTrigger", "path", "event_grid"} | {"type": "eventGridTrigger"}} for the modules
    function_app.py registers (`from blueprints import a, b` / `import x`) and function_app.py itself."""
    app = root / "function_app.py"
    tree = ast.parse(app.read_text(encoding="utf-8"))
    files = [app]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                for candidate in (root / node.module.replace(".", "/") / f"{alias.name}.py",
                                  root / f"{node.module.replace('.', '/')}.py"):
                    if candidate.exists() and candidate not in files:
                        files.append(candidate)
                        break
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            name, trigger = fn.name, None
            for decorator in fn.decorator_list:
                parsed = _decorator_call(decorator)
                if parsed is None:
                    continue
                kind, call = parsed
                if kind == "function_name":
                    name = _text(_keyword(call, "name", 0)) or name
                elif kind == "blob_trigger":
                    trigger = {"type": "blobTrigger", "path": _text(_keyword(call, "path")),
                               "event_grid": _is_event_grid_source(_keyword(call, "source"))}
                elif kind == "event_grid_trigger":
                    trigger = {"type": "eventGridTrigger"}
            if trigger is not None:
                found[name] = trigger
    return found


# ---- az -------------------------------------------------------------------------------------------------------------
def az(*args: str) -> str:
    exe = shutil.which("az")
    if exe is None:
        raise HookError("the Azure CLI (az) is required: https://aka.ms/azure-cli")
    done = subprocess.run([exe, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise HookError(f"az {args[0]} {args[1] if len(args) > 1 else ''} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def rest(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    """`az rest` against ARM; a body goes through a private file (`--body @file`), never on the command line."""
    args = ["rest", "--method", method, "--url", url, "--output", "json"]
    if body is None:
        out = az(*args)
    else:
        with tempfile.TemporaryDirectory() as folder:  # created 0700: the body may hold a key
            path = Path(folder) / "body.json"
            path.write_text(json.dumps(body), encoding="utf-8")
            os.chmod(path, 0o600)
            out = az(*args, "--body", f"@{path}", "--headers", "Content-Type=application/json")
    return json.loads(out) if out.strip() else None


# ---- the steps ------------------------------------------------------------------------------------------------------
def settings() -> dict[str, str]:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        raise HookError(f"{', '.join(missing)} not set (run it as the azd postdeploy hook, or export the azd env: "
                        "azd env get-values)")
    env = {name: os.environ[name] for name in REQUIRED}
    env["AZURE_SUBSCRIPTION_ID"] = os.environ.get("AZURE_SUBSCRIPTION_ID") or az(
        "account", "show", "--query", "id", "--output", "tsv").strip()
    env["AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID"] = os.environ.get("AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID", "")
    return env


def wanted(env: dict[str, str], declared: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The triggers to subscribe: every blob trigger; azureml_job_event when a workspace topic exists."""
    blobs = {n: t for n, t in declared.items() if t["type"] == "blobTrigger"}
    if not blobs:
        raise HookError("the app's code declares no blob trigger; nothing to subscribe")
    not_eg = sorted(n for n, t in blobs.items() if not t["event_grid"] or not t["path"])
    if not_eg:
        raise HookError(f"Flex Consumption runs only Event Grid-source blob triggers with a literal path: {not_eg}")
    out = dict(blobs)
    if env["AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID"]:
        if declared.get(AZUREML_FUNCTION, {}).get("type") != "eventGridTrigger":
            raise HookError(f"AZURE_ML_WORKSPACE_ID is set but the code declares no Event Grid trigger named "
                            f"{AZUREML_FUNCTION}: the workspace's job events would have nowhere to go")
        out[AZUREML_FUNCTION] = declared[AZUREML_FUNCTION]
    return out


def listed(site: str) -> dict[str, dict[str, Any]]:
    """The functions ARM lists for the site: {name: {binding type: binding}}."""
    answer = rest("get", f"{ARM}{site}/functions?api-version={WEB_API}") or {}
    out = {}
    for item in answer.get("value", []):
        name = str(item.get("name", "")).rsplit("/", 1)[-1]
        bindings = ((item.get("properties") or {}).get("config") or {}).get("bindings") or []
        out[name] = {b.get("type", ""): b for b in bindings if isinstance(b, dict)}
    return out


def sync_and_wait(site: str, want: dict[str, dict[str, Any]], timeout: float, poll: float) -> None:
    """Sync the host's triggers, then wait until ARM lists every wanted function (syncing again now and then)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        if attempt % 3 == 0:
            rest("post", f"{ARM}{site}/syncfunctiontriggers?api-version={WEB_API}")
        attempt += 1
        present = listed(site)
        missing = sorted(set(want) - set(present))
        if not missing:
            for name, trigger in want.items():
                blob = present[name].get("blobTrigger")
                if trigger["type"] == "blobTrigger" and blob and blob.get("path") not in (None, trigger["path"]):
                    raise HookError(f"{name} is deployed with path {blob.get('path')!r} but this checkout declares "
                                    f"{trigger['path']!r}: deploy this code first (azd deploy)")
            say(f"the host lists {', '.join(sorted(want))}")
            return
        if time.monotonic() >= deadline:
            raise HookError(f"after {timeout:.0f} s ARM still lists {sorted(present) or 'nothing'}, not {missing}: "
                            "the code may have failed to index (see the app's logs), or the host is still starting "
                            "- run `azd hooks run postdeploy` again in a minute")
        say(f"waiting for {', '.join(missing)} (ARM lists {', '.join(sorted(present)) or 'nothing'})")
        time.sleep(poll)


def system_keys(site: str, names: list[str], timeout: float, poll: float) -> dict[str, str]:
    """The extension system keys (they appear once the host has started with the extension)."""
    deadline = time.monotonic() + timeout
    while True:
        keys = (rest("post", f"{ARM}{site}/host/default/listkeys?api-version={WEB_API}") or {}).get("systemKeys") or {}
        missing = [n for n in names if not keys.get(n)]
        if not missing:
            return {n: str(keys[n]) for n in names}
        if time.monotonic() >= deadline:
            raise HookError(f"the host has no {', '.join(missing)} key yet; is the code deployed?")
        say(f"waiting for the {', '.join(missing)} key")
        time.sleep(poll)


def blob_subscription(env: dict[str, str], host: str, function: str, path: str, key: str) -> dict[str, Any]:
    container, _, pattern = path.partition("/")
    suffix = pattern.rsplit("}", 1)[1] if "}" in pattern else ""
    endpoint = (f"https://{host}/runtime/webhooks/blobs?functionName={quote('Host.Functions.' + function, safe='')}"
                f"&code={quote(key, safe='')}")
    event_filter: dict[str, Any] = {"includedEventTypes": ["Microsoft.Storage.BlobCreated"],
                                    "subjectBeginsWith": f"/blobServices/default/containers/{container}/blobs/",
                                    "isSubjectCaseSensitive": False}
    if suffix:
        event_filter["subjectEndsWith"] = suffix
    return {"properties": {
        "destination": {"endpointType": "WebHook",
                        "properties": {"endpointUrl": endpoint, "maxEventsPerBatch": 1}},
        "filter": event_filter,
        "eventDeliverySchema": "EventGridSchema",
        "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
        "deadLetterWithResourceIdentity": {
            "identity": {"type": "SystemAssigned"},
            "deadLetterDestination": {"endpointType": "StorageBlob", "properties": {
                "resourceId": env["AZURE_STORAGE_ACCOUNT_ID"],
                "blobContainerName": env["EVENTGRID_DEADLETTER_CONTAINER"]}}}}}


def azureml_subscription(host: str, key: str) -> dict[str, Any]:
    endpoint = (f"https://{host}/runtime/webhooks/eventgrid?functionName={quote(AZUREML_FUNCTION, safe='')}"
                f"&code={quote(key, safe='')}")
    return {"properties": {
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": endpoint, "maxEventsPerBatch": 1}},
        "filter": {"includedEventTypes": AZUREML_EVENTS},
        "eventDeliverySchema": "EventGridSchema",
        # Reconcile polls every job as the safety net: an event lost after a day costs a delay, not a run.
        "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}}}


def check_key_vault_references(site: str, timeout: float, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = rest("get", f"{ARM}{site}/config/configreferences/appsettings?api-version={WEB_API}") or {}
        except HookError as exc:  # informative only: the app refuses an unresolved reference by itself
            say(f"could not read the Key Vault references' status ({exc}); skipped")
            return
        bad = {str(item.get("name", "")).rsplit("/", 1)[-1]: (item.get("properties") or {}).get("status")
               for item in answer.get("value", [])
               if (item.get("properties") or {}).get("status") not in (None, "Resolved")}
        if not bad:
            return
        if time.monotonic() >= deadline:
            raise HookError(f"Key Vault references not resolved: {bad} - the app's identity needs Key Vault Secrets "
                            "User on the vault (rbac.bicep); role assignments can take minutes to apply: then "
                            "`az functionapp restart` and run this hook again")
        say(f"waiting for Key Vault references: {bad}")
        time.sleep(poll)


def main() -> int:
    timeout = float(os.environ.get("POSTDEPLOY_TIMEOUT_SECONDS", "300"))
    poll = float(os.environ.get("POSTDEPLOY_POLL_SECONDS", "10"))
    try:
        env = settings()
        want = wanted(env, declared_triggers())
        site = (f"/subscriptions/{env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{env['RESOURCE_GROUP']}/providers/"
                f"Microsoft.Web/sites/{env['AZURE_FUNCTION_APP_NAME']}")
        host = rest("get", f"{ARM}{site}?api-version={WEB_API}")["properties"]["defaultHostName"]
        sync_and_wait(site, want, timeout, poll)
        key_names = ["blobs_extension"] + (["eventgrid_extension"] if AZUREML_FUNCTION in want else [])
        keys = system_keys(site, key_names, timeout, poll)
        topic = (f"/subscriptions/{env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{env['RESOURCE_GROUP']}/providers/"
                 f"Microsoft.EventGrid/systemTopics/{env['EVENTGRID_SYSTEM_TOPIC_NAME']}")
        count = 0
        for function, trigger in sorted(want.items()):
            if trigger["type"] != "blobTrigger":
                continue
            name = f"blob-{function}".replace("_", "-")[:64]
            body = blob_subscription(env, host, function, trigger["path"], keys["blobs_extension"])
            rest("put", f"{ARM}{topic}/eventSubscriptions/{name}?api-version={EVENTGRID_API}", body)
            say(f"{name} -> {function} ({trigger['path']})")
            count += 1
        if AZUREML_FUNCTION in want:
            topic_id = env["AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID"]
            body = azureml_subscription(host, keys["eventgrid_extension"])
            rest("put", f"{ARM}{topic_id}/eventSubscriptions/retrain-azureml-jobs?api-version={EVENTGRID_API}", body)
            say(f"retrain-azureml-jobs -> {AZUREML_FUNCTION} ({', '.join(AZUREML_EVENTS)})")
            count += 1
        check_key_vault_references(site, timeout, poll)
        say(f"{count} subscription(s) in place")
        return 0
    except HookError as exc:
        print(f"postdeploy: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
