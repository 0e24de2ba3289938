"""`make run`: the stack for hands-on use, until Ctrl-C or SIGTERM.

State lives in `.local/` (Azurite data, the emulator's workspace, `stack.json`) and survives restarts; the ports
of the last run are reused while free, so `local.settings.json` (written from the emulator manifest when absent)
keeps pointing at the right places. The settings the stack owns are passed in the host's environment as well,
which wins over the file.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tools.localdev.azurite import PROJECT_ROOT
from tools.localdev.stack import STACK_KEYS, Stack

_stop = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def usage(stack: Stack) -> str:
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

Try:
  curl -s {api}/health
  curl -s -X POST {api}/endpoints -H 'Content-Type: application/json' \\
       -d '{{"name": "tenant-a", "description": "first tenant"}}'
  .venv/bin/python -m tools.emulator.census --rows 5000 --seed 1 --drift 1 --out /tmp/new.csv
  curl -s -X POST '{api}/retrain?name=tenant-a/new.csv' -H 'Content-Type: text/csv' --data-binary @/tmp/new.csv
  curl -s {api}/runs
  curl -s {api}/endpoints/tenant-a
  curl -s -X POST {api}/endpoints/tenant-a/rollback
  curl -s -X POST {api}/retrain -H 'Content-Type: application/json' \
       -d '{{"blob": "training-data/tenant-a/new.csv", "dryRun": true}}'
Or drop a CSV into the training-data container (training-data/tenant-a/<file>.csv retrains tenant-a).
Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.localdev.run", description="Run the local stack.")
    parser.add_argument("--port", type=int, default=7071, help="functions port (a free one if taken)")
    parser.add_argument("--workdir", type=Path, default=PROJECT_ROOT / ".local")
    parser.add_argument("--func", choices=["auto", "yes", "no"], default="auto",
                        help="run under Core Tools (func start): auto = when func is on PATH")
    parser.add_argument("--quiet", action="store_true", help="do not stream the host's log")
    parser.add_argument("--settings-file", type=Path, default=None,
                        help="the app's local settings: written from the emulator manifest when absent (default: "
                             "local.settings.json; with --identity, a private file in the workdir)")
    parser.add_argument("--identity", action="store_true",
                        help="identity mode, as in Azure: Azurite over HTTPS with OAuth, the app with a managed "
                             "identity and no key in any setting, events to a topic that refuses keys "
                             "(state in .local/identity)")
    args = parser.parse_args(argv)
    if args.identity:
        args.workdir = args.workdir / "identity" if args.workdir == PROJECT_ROOT / ".local" else args.workdir
        project_file = PROJECT_ROOT / "local.settings.json"
        if args.func != "no" and project_file.exists() and \
                "AzureWebJobsStorage" in json.loads(project_file.read_text()).get("Values", {}):
            print("make run: --identity under Core Tools needs a local.settings.json without AzureWebJobsStorage "
                  "(Core Tools would hand the app its connection string); move the file aside or use --func no",
                  file=sys.stderr)
            return 2
    if args.settings_file is None:
        args.settings_file = args.workdir / "local.settings.json" if args.identity else \
            PROJECT_ROOT / "local.settings.json"
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    settings_file = args.settings_file
    had_settings = settings_file.exists()
    stack = Stack(args.workdir, functions_port=args.port, persistent=True, local_settings=settings_file,
                  identity=args.identity,
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
        stale = [k for k in STACK_KEYS if k in values and values[k] != stack.settings.get(k)]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
