"""`make run`: the stack for hands-on use, until Ctrl-C or SIGTERM.

State lives in `.local/` (Azurite data, the emulator's workspace, `stack.json`) and survives restarts; the ports
of the last run are reused while free, so `local.settings.json` (written from the emulator manifest when absent)
keeps pointing at the right places. The settings the stack owns are passed in the host's environment as well,
which wins over the file.

`--target azureml` (`make run TARGET=azureml`): the app's one target is the Azure ML stand-in's workspace (state in
`.local/azureml`, settings in a private file there); `--identity` nests its state in the target's folder.

One stack per state folder: a run holds an exclusive lock on `<workdir>/run.lock` while it lives (the OS drops it
when the process ends, however it ends), so a second `make run` in the same folder says "already running at <url>"
(from the stack's state file, checked live) and exits 1 instead of starting a second stack on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

import requests

from tools.localdev.azurite import PROJECT_ROOT
from tools.localdev.stack import AZUREML_KEYS, JOB_EVENT_FUNCTION, STACK_KEYS, Stack

_stop = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def hold_lock(workdir: Path) -> IO[str] | None:
    """This run's exclusive lock on the state folder (kept open while it runs), or None when another process
    holds it."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle = (workdir / "run.lock").open("a+")
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def already_running(workdir: Path) -> str:
    """What to say when another run holds the folder: its URL when its host answers, else that it is starting or
    stopping."""
    holder = (workdir / "run.lock").read_text().strip() if (workdir / "run.lock").exists() else "?"
    try:
        url = str(json.loads((workdir / "stack.json").read_text())["functions_url"])
        live = requests.get(f"{url}/admin/host/status", timeout=3).ok
    except (OSError, ValueError, KeyError, requests.RequestException):
        url, live = "", False
    if live:
        return (f"make run: already running at {url} (HTTP API {url}/api; state in {workdir}, process {holder}): "
                "use it, or stop it (Ctrl-C where it runs) first")
    return (f"make run: another make run (process {holder}) is starting or stopping in {workdir}; wait for it, or "
            "stop it first")


def usage(stack: Stack) -> str:
    if stack.target == "azureml":
        return azureml_usage(stack)
    api = f"{stack.functions_url}/api"
    assert stack.emulator is not None
    mode = "" if not stack.identity else f"""
Identity mode: the app has no key (managed identity from {stack.emulator.manifest['identity']['endpoint']});
  Azurite and the emulator serve HTTPS with the CA in {stack.tls.ca if stack.tls else '?'} (curl --cacert it)."""
    return f"""
The stack is up ({stack.host_kind}).{mode}
  Functions     {stack.functions_url}   (HTTP API under {api})
  Status page   {api}/status   (open it in a browser)
  Storage       {(stack.workdir / 'stack.json')}  -> storage_connection_string (Azurite)
  Emulator      {stack.emulator.url}   (manifest: {stack.emulator.manifest_path})
  Host log      {stack.workdir / 'functions.log'}

Try (in another terminal, from this folder):
  API={api}
  curl -s $API/health
  curl -s -X POST $API/endpoints -H 'Content-Type: application/json' \\
       -d '{{"name": "tenant-a", "description": "first tenant"}}'
  .venv/bin/python -m tools.emulator.census --rows 5000 --seed 1 --drift 1 --out /tmp/new.csv
  curl -s -X POST "$API/retrain?name=tenant-a/new.csv" -H 'Content-Type: text/csv' --data-binary @/tmp/new.csv
  curl -s $API/runs
  curl -s $API/endpoints/tenant-a
  curl -s -X POST $API/endpoints/tenant-a/rollback
  curl -s -X POST $API/retrain -H 'Content-Type: application/json' \\
       -d '{{"blob": "training-data/tenant-a/new.csv", "dryRun": true}}'
Or drop a CSV into the training-data container (training-data/tenant-a/<file>.csv retrains tenant-a).
Ctrl-C stops everything.
"""


def azureml_usage(stack: Stack) -> str:
    api = f"{stack.functions_url}/api"
    assert stack.emulator is not None and stack.tls is not None
    m, aml = stack.emulator.manifest, stack.emulator.manifest["azureml"]
    mode = " Identity mode: Azurite over HTTPS with OAuth too, no storage key in any setting." if stack.identity else ""
    hook = f"{stack.functions_url}/runtime/webhooks/eventgrid?functionName={JOB_EVENT_FUNCTION}"
    helpers = ".venv/bin/python -m tools.localdev" + ("" if stack.workdir == PROJECT_ROOT / ".local" / "azureml"
                                                      else f" --stack {stack.state_path}")
    return f"""
The stack is up ({stack.host_kind}), target Azure Machine Learning (v2): the app's one target is the stand-in's
workspace (RETRAIN_TARGETS, kind azureml), reached with its managed identity - no key for Azure ML.{mode}
  Functions     {stack.functions_url}   (HTTP API under {api})
  Status page   {api}/status   (open it in a browser)
  Azure ML ARM  {aml['arm_url']}   (HTTPS: curl --cacert {stack.tls.ca})
  Workspace     {aml['workspace_id']}
  Job events    RunCompleted, RunStatusChanged -> {hook}
  Storage       {stack.state_path}  -> storage_connection_string (Azurite)
  Emulator      {stack.emulator.url}   (manifest: {stack.emulator.manifest_path})
  Host log      {stack.workdir / 'functions.log'}

A management token (from the local managed-identity endpoint, as ManagedIdentityCredential asks in Azure):
  M={stack.emulator.manifest_path}; CA={stack.tls.ca}
  TOKEN=$(curl -s --cacert $CA -H "X-IDENTITY-HEADER: $(jq -r .identity.header $M)" \\
       "$(jq -r .identity.endpoint $M)?resource=https://management.azure.com/&api-version=2019-08-01" \\
       | jq -r .access_token)
  curl -s --cacert $CA -H "Authorization: Bearer $TOKEN" \\
       "{aml['arm_url']}{aml['workspace_id']}/onlineEndpoints?api-version={aml['api_version']}"
  (a scoring token: resource=https://ml.azure.com; the workspace's events as its topic received them:
   {m['admin_url']}/eventgrid/topics/{aml['events_topic']}/events)

Try (in another terminal, from this folder):
  API={api}
  curl -s $API/health
  curl -s -X POST $API/endpoints -H 'Content-Type: application/json' \\
       -d '{{"name": "tenant-a", "description": "first tenant"}}'      # an online endpoint, no deployment yet
  .venv/bin/python -m tools.emulator.census --rows 5000 --seed 1 --drift 1 --out /tmp/new.csv
  {helpers} drop /tmp/new.csv training-data/tenant-a/new.csv   # a job, then a new deployment
  curl -s $API/runs
  curl -s $API/endpoints/tenant-a          # its deployments, their traffic and model versions
  {helpers} score tenant-a               # through its scoringUri with an Entra token
  curl -s -X POST $API/endpoints/tenant-a/rollback   # after a second model: a traffic switch back
  curl -s -X POST $API/retrain -H 'Content-Type: application/json' \\
       -d '{{"blob": "training-data/tenant-a/new.csv", "dryRun": true}}'
Or drop a CSV into the training-data container (training-data/tenant-a/<file>.csv retrains tenant-a).
Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.localdev.run", description="Run the local stack.")
    parser.add_argument("--port", type=int, default=7071, help="functions port (a free one if taken)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="state folder (default: .local; .local/azureml with --target azureml)")
    parser.add_argument("--target", choices=["classic", "azureml"], default="classic",
                        help="what the app retrains: the Studio (classic) emulator's web service, or the Azure ML "
                             "stand-in's workspace (online endpoints, jobs, identity only)")
    parser.add_argument("--azureml-timing", choices=["fast", "realistic"], default="fast",
                        help="the Azure ML stand-in's operation times (see tools/azureml/README.md)")
    parser.add_argument("--azureml-time", action="append", default=[], metavar="NAME=SECONDS",
                        help="one Azure ML stand-in time, e.g. deployment_create=30 (repeatable)")
    parser.add_argument("--func", choices=["auto", "yes", "no"], default="auto",
                        help="run under Core Tools (func start): auto = when func is on PATH")
    parser.add_argument("--quiet", action="store_true", help="do not stream the host's log")
    parser.add_argument("--settings-file", type=Path, default=None,
                        help="the app's local settings: written from the emulator manifest when absent (default: "
                             "local.settings.json; with --identity or --target azureml, a private file in the workdir)")
    parser.add_argument("--identity", action="store_true",
                        help="identity mode, as in Azure: Azurite over HTTPS with OAuth, the app with a managed "
                             "identity and no key in any setting, events to a topic that refuses keys "
                             "(state in .local/identity)")
    args = parser.parse_args(argv)
    azureml = args.target == "azureml"
    if args.workdir is None:
        args.workdir = PROJECT_ROOT / ".local" / ("azureml" if azureml else "")
        if args.identity:
            args.workdir = args.workdir / "identity"
    lock = hold_lock(args.workdir)
    if lock is None:
        print(already_running(args.workdir), file=sys.stderr)
        return 1
    under_func = args.func == "yes" or (args.func == "auto" and shutil.which("func") is not None)
    if args.identity:
        project_file = PROJECT_ROOT / "local.settings.json"
        if under_func and project_file.exists() and \
                "AzureWebJobsStorage" in json.loads(project_file.read_text()).get("Values", {}):
            print("make run: --identity under Core Tools needs a local.settings.json without AzureWebJobsStorage "
                  "(Core Tools would hand the app its connection string); move the file aside or use --func no",
                  file=sys.stderr)
            return 2
    if args.settings_file is None:
        args.settings_file = args.workdir / "local.settings.json" if args.identity or azureml else \
            PROJECT_ROOT / "local.settings.json"
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    settings_file = args.settings_file
    had_settings = settings_file.exists()
    emulator_args = ["--azureml-timing", args.azureml_timing]
    for item in args.azureml_time:
        emulator_args += ["--azureml-time", item]
    stack = Stack(args.workdir, functions_port=args.port, persistent=True, local_settings=settings_file,
                  identity=args.identity, target=args.target, emulator_args=emulator_args if azureml else [],
                  use_func={"auto": None, "yes": True, "no": False}[args.func],
                  progress=lambda text: print(f"make run: {text}", flush=True))
    try:
        stack.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"make run: could not start the stack: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    if had_settings:
        values = json.loads(settings_file.read_text()).get("Values", {})
        owned = STACK_KEYS + AZUREML_KEYS if azureml else STACK_KEYS
        stale = [k for k in owned if k in values and values[k] != stack.settings.get(k)]
        if stale:
            print(f"make run: local.settings.json differs from this stack in {', '.join(stale)}; the stack's values "
                  "are passed in the environment and win (delete the file to rewrite it)", flush=True)
    print(usage(stack), flush=True)
    log_path = stack.workdir / "functions.log"
    position = log_path.stat().st_size if log_path.exists() else 0
    try:
        while not _stop:
            if stack.host_proc is not None and stack.host_proc.poll() is not None:
                print(f"make run: the function host exited ({stack.host_proc.returncode}):\n{stack.host_log_tail()}",
                      file=sys.stderr)
                return 1
            if not args.quiet and log_path.exists():
                with log_path.open("rb") as f:
                    f.seek(position)
                    chunk = f.read()
                    position += len(chunk)
                if chunk:
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
            time.sleep(0.3)
    finally:
        print("make run: stopping", flush=True)
        stack.stop()
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
