"""Start the emulator (`python -m tools.emulator serve`) as a child process and read its manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.localdev.azurite import PROJECT_ROOT
from tools.localdev.process import spawn, stop


@dataclass
class EmulatorProcess:
    """A running emulator. `manifest` holds its URLs, ids and keys (see the README)."""

    storage: str
    workdir: Path
    args: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def manifest_path(self) -> Path:
        return self.workdir / "manifest.json"

    @property
    def url(self) -> str:
        return str(self.manifest["management_url"])

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.manifest_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "tools.emulator", "serve", "--host", "127.0.0.1", "--port", "0",
               "--storage", self.storage, "--manifest", str(self.manifest_path), *self.args]
        if self.data_dir is not None:
            cmd += ["--data", str(self.data_dir)]
        self.proc = spawn(cmd, log_path=self.workdir / "emulator.log", cwd=PROJECT_ROOT,
                          env={**os.environ, **self.env} if self.env else None)
        deadline = time.monotonic() + timeout
        while not self.manifest_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.proc.returncode}; see "
                                   f"{self.workdir / 'emulator.log'}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the emulator wrote no manifest in {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.manifest = json.loads(self.manifest_path.read_text())
        return self

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "emulator.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
