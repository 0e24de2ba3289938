"""`make run` (python -m tools.localdev.run) as a user runs it: it comes up, writes local.settings.json and
.local/stack.json, serves the app, and stops everything on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from tools.localdev.azurite import PROJECT_ROOT
from tools.localdev.ports import free_port


def test_make_run_comes_up_writes_its_files_and_stops_cleanly_on_sigterm(tmp_path):
    settings = tmp_path / "local.settings.json"
    proc = subprocess.Popen([sys.executable, "-m", "tools.localdev.run", "--workdir", str(tmp_path / "local"),
                             "--port", str(free_port()), "--settings-file", str(settings), "--func", "no"],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        state_path = tmp_path / "local" / "stack.json"
        deadline = time.monotonic() + 90
        while not state_path.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "make run did not come up"
            time.sleep(0.2)
        state = json.loads(state_path.read_text())
        assert set(state) >= {"functions_url", "storage_connection_string", "emulator_manifest"}
        values = json.loads(settings.read_text())["Values"]
        assert values["FUNCTIONS_WORKER_RUNTIME"] == "python" and values["RETRAIN_RECONCILE_SCHEDULE"]
        assert values["AzureWebJobsStorage"] == state["storage_connection_string"]
        for private in (settings, state_path, Path(state["emulator_manifest"])):  # they hold keys: owner only
            assert private.stat().st_mode & 0o077 == 0, private
        health = requests.get(f"{state['functions_url']}/api/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # Azurite, the emulator, the function host
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "curl -s" in out and "make run: stopping" in out
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
