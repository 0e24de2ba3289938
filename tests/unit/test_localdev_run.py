"""`make run` (tools.localdev.run) before it starts anything: one stack per state folder - a second run in the same
folder says where the first one is and exits 1 - and identity mode after a plain run starts when Core Tools is not
installed (issue 21)."""

from __future__ import annotations

import json
import shutil
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tools.localdev import run


class Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/admin/host/status" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def live_host() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


class NoStack:
    """Stands in for Stack: building one means a stack would start."""

    started: list[Path] = []

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        self.workdir = workdir

    def start(self) -> None:
        type(self).started.append(self.workdir)
        raise RuntimeError("a stack would start here")

    def stop(self) -> None:
        pass


@pytest.fixture
def no_stack(monkeypatch: pytest.MonkeyPatch) -> type[NoStack]:
    monkeypatch.setattr(run, "Stack", NoStack)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's own Ctrl-C
    monkeypatch.setattr(NoStack, "started", [])
    return NoStack


def test_a_second_run_in_the_same_folder_says_already_running_at_its_url_and_exits_1(tmp_path, live_host, no_stack,
                                                                                      capsys):
    workdir = tmp_path / "local"
    first = run.hold_lock(workdir)  # the first `make run`, alive
    assert first is not None
    (workdir / "stack.json").write_text(json.dumps({"functions_url": live_host}))
    assert run.main(["--workdir", str(workdir), "--func", "no", "--settings-file", str(tmp_path / "s.json")]) == 1
    err = capsys.readouterr().err
    assert f"make run: already running at {live_host}" in err and f"{live_host}/api" in err
    assert not no_stack.started and not (tmp_path / "s.json").exists()  # nothing started, nothing written
    first.close()  # the first run ends (or dies: the OS drops its lock the same way)
    assert run.main(["--workdir", str(workdir), "--func", "no", "--settings-file", str(tmp_path / "s.json")]) == 1
    assert no_stack.started == [workdir] and "could not start the stack" in capsys.readouterr().err


def test_a_run_holding_the_folder_without_a_live_host_is_said_to_be_starting_or_stopping(tmp_path, no_stack,
                                                                                         capsys):
    workdir = tmp_path / "local"
    held = run.hold_lock(workdir)
    assert held is not None
    (workdir / "stack.json").write_text(json.dumps({"functions_url": "http://127.0.0.1:1"}))
    try:
        assert run.main(["--workdir", str(workdir), "--func", "no"]) == 1
    finally:
        held.close()
    assert "is starting or stopping" in capsys.readouterr().err and not no_stack.started


def test_identity_mode_after_a_plain_run_starts_when_core_tools_is_not_installed(tmp_path, no_stack, monkeypatch,
                                                                                 capsys):
    """It refused ('--identity under Core Tools needs ...') though Core Tools was not even installed."""
    monkeypatch.setattr(run, "PROJECT_ROOT", tmp_path)
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"AzureWebJobsStorage": "UseDev..."}}))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert run.main(["--identity", "--workdir", str(tmp_path / "identity")]) == 1
    assert no_stack.started == [tmp_path / "identity"] and "Core Tools" not in capsys.readouterr().err
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")  # with Core Tools: still refused
    assert run.main(["--identity", "--workdir", str(tmp_path / "identity")]) == 2
    assert "under Core Tools" in capsys.readouterr().err
