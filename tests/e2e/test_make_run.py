"""`make run` (python -m tools.localdev.run) as a user runs it: it comes up, writes local.settings.json and
.local/stack.json, serves the app, and stops everything on SIGTERM; a second one in the same folder says where the
first runs and exits; started again while its port is taken, it moves the app and its storage-event subscriptions
together."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from tools.localdev.azurite import PROJECT_ROOT
from tools.localdev.ports import free_port


def start_run(workdir: Path, settings: Path, port: int, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """`make run` in a subprocess, once its stack.json is written (the stack is up)."""
    state_path = workdir / "stack.json"
    state_path.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "tools.localdev.run", "--workdir", str(workdir),
                             "--port", str(port), "--settings-file", str(settings), "--func", "no", *extra],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while True:  # the file is created, then written (not atomically): read it once it is whole
        if state_path.exists():
            try:
                return proc, json.loads(state_path.read_text())
            except ValueError:
                pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "make run did not come up"
        time.sleep(0.2)


def stop_run(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_make_run_comes_up_writes_its_files_and_stops_cleanly_on_sigterm(tmp_path):
    settings = tmp_path / "local.settings.json"
    proc, state = start_run(tmp_path / "local", settings, free_port())
    try:
        assert set(state) >= {"functions_url", "storage_connection_string", "emulator_manifest"}
        values = json.loads(settings.read_text())["Values"]
        assert values["FUNCTIONS_WORKER_RUNTIME"] == "python" and values["RETRAIN_RECONCILE_SCHEDULE"]
        assert values["AzureWebJobsStorage"] == state["storage_connection_string"]
        for private in (settings, tmp_path / "local" / "stack.json", Path(state["emulator_manifest"])):
            assert private.stat().st_mode & 0o077 == 0, private  # they hold keys: owner only
        health = requests.get(f"{state['functions_url']}/api/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        second = subprocess.run([sys.executable, "-m", "tools.localdev.run", "--workdir", str(tmp_path / "local"),
                                 "--settings-file", str(settings), "--func", "no"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=60)  # issue 21: a second stack started
        assert second.returncode == 1 and f"already running at {state['functions_url']}" in second.stderr, second
        assert json.loads((tmp_path / "local" / "stack.json").read_text()) == state  # the first one's, untouched
        manifest = json.loads(Path(state["emulator_manifest"]).read_text())
        aml, ident = manifest["azureml"], manifest["identity"]  # the Azure ML stand-in is up beside the classic one
        token = requests.get(ident["endpoint"], headers={"X-IDENTITY-HEADER": ident["header"]}, timeout=10, params={
            "resource": "https://management.azure.com/", "api-version": "2019-08-01"}).json()["access_token"]
        endpoints = requests.get(f"{aml['arm_url']}{aml['workspace_id']}/onlineEndpoints", timeout=10,
                                 params={"api-version": aml["api_version"]},
                                 headers={"Authorization": f"Bearer {token}"})
        assert endpoints.status_code == 200 and "value" in endpoints.json()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # Azurite, the emulator, the function host
    finally:
        out = stop_run(proc)
    assert "curl -s" in out and "make run: stopping" in out
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_make_run_again_with_its_port_taken_keeps_one_subscription_per_trigger_to_the_live_port(tmp_path):
    workdir, settings, port = tmp_path / "local", tmp_path / "local.settings.json", free_port()
    proc, first = start_run(workdir, settings, port)
    stop_run(proc)
    with socket.socket() as squatter:  # someone else takes the port in between
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the first run's port may be in TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        proc, second = start_run(workdir, settings, port)
        try:
            live = second["functions_url"]
            assert live != first["functions_url"]
            manifest = json.loads(Path(second["emulator_manifest"]).read_text())
            subs = requests.get(f"{manifest['admin_url']}/storage-events/subscriptions", timeout=30).json()
            assert len(subs) == 2 and all(s["endpoint"].startswith(f"{live}/runtime/webhooks/blobs") for s in subs)
            assert {s["name"] for s in subs} == {"training-data", "models"}
        finally:
            stop_run(proc)


def test_make_run_identity_comes_up_keyless_and_the_readme_helper_drops_a_file_over_https(tmp_path):
    """`make run RUN_ARGS=--identity`: the app's settings hold no key; a file dropped with the helper (over HTTPS,
    trusting the stack's CA) is accepted by the app through its managed identity."""
    from tools.localdev.azurite import ACCOUNT_KEY

    settings = tmp_path / "local.settings.json"
    proc, state = start_run(tmp_path / "local", settings, free_port(), "--identity")
    try:
        values = json.loads(settings.read_text())["Values"]
        assert "AzureWebJobsStorage" not in values and ACCOUNT_KEY not in settings.read_text()
        assert values["AzureWebJobsStorage__blobServiceUri"].startswith("https://") and state["identity"]
        assert Path(state["ca_bundle"]).exists()
        data = tmp_path / "new.csv"
        from tools.emulator.census import csv_text

        data.write_text(csv_text(300, seed=4))
        stack_file = str(tmp_path / "local" / "stack.json")
        done = subprocess.run([sys.executable, "-m", "tools.localdev", "--stack", stack_file, "drop", str(data),
                               "training-data/tenant-z/new.csv"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        runs_url = f"{state['functions_url']}/api/runs"
        deadline = time.monotonic() + 60
        while not [r for r in requests.get(runs_url, timeout=30).json()["runs"]
                   if r["dataPath"] == "training-data/tenant-z/new.csv"]:
            assert time.monotonic() < deadline, "the dropped file never became a run"
            time.sleep(0.3)
    finally:
        out = stop_run(proc)
    assert "Identity mode" in out


def test_make_run_target_azureml_with_identity_comes_up_keyless_with_the_job_events_subscribed(tmp_path):
    """`make run TARGET=azureml RUN_ARGS=--identity`: stack.json says the target; the app's settings name the Azure ML
    stand-in's workspace and no key; the workspace's job events go to azureml_job_event on the live host; POST
    /api/endpoints creates an online endpoint; the usage names the ARM URL, the workspace and how to get a token."""
    from tools.localdev import workspace
    from tools.localdev.azurite import ACCOUNT_KEY

    settings = tmp_path / "local.settings.json"
    proc, state = start_run(tmp_path / "local", settings, free_port(), "--identity", "--target", "azureml")
    try:
        assert state["target"] == "azureml" and state["identity"] and Path(state["ca_bundle"]).exists()
        text = settings.read_text()
        values = json.loads(text)["Values"]
        assert ACCOUNT_KEY not in text and "AzureWebJobsStorage" not in values
        assert not [k for k in values if k.endswith("_KEY")], values.keys()
        (target,) = json.loads(values["RETRAIN_TARGETS"])
        assert target["kind"] == "azureml"
        manifest = json.loads(Path(state["emulator_manifest"]).read_text())
        http = workspace.session(state["ca_bundle"])
        subs = http.get(f"{manifest['admin_url']}/storage-events/subscriptions", timeout=30).json()
        (hook,) = [s for s in subs if s["name"] == "azureml_job_event"]
        assert hook["endpoint"] == f"{state['functions_url']}/runtime/webhooks/eventgrid?functionName=azureml_job_event"
        assert set(hook["event_types"]) == {"Microsoft.MachineLearningServices.RunCompleted",
                                            "Microsoft.MachineLearningServices.RunStatusChanged"}
        created = requests.post(f"{state['functions_url']}/api/endpoints", json={"name": "tenant-a"}, timeout=120)
        assert created.status_code == 201 and created.json()["kind"] == "azureml", created.text
        assert workspace.Workspace(manifest, http).endpoint("tenant-a")["properties"]["authMode"] == "AADToken"
    finally:
        out = stop_run(proc)
    aml = manifest["azureml"]
    assert aml["arm_url"] in out and aml["workspace_id"] in out and "resource=https://management.azure.com/" in out
    assert "make run: stopping" in out
