"""Shared fixtures: one Azurite for the whole run (free ports, own data folder, stopped whatever happens) and
emulators started on demand. Tests are marked unit / integration / e2e by the folder they live in."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools.localdev.azurite import PROJECT_ROOT, Azurite
from tools.localdev.emulator import EmulatorProcess

# the `harness` fixture (library wired to the shared emulator), the Azure ML stand-in's (`aml_harness`)
pytest_plugins = ["tests.support.harness", "tests.support.azureml"]
RUNS_DIR = PROJECT_ROOT / ".test-runs"
# One id for the whole run, inherited by pytest-xdist's workers (started after pytest_configure): each process
# logs to suite-<run>-<pid>.log and reports leaks to leaks-<run>-<pid>.txt, which the controller reads at the end.
SUITE_RUN = os.environ.setdefault("RETRAIN_SUITE_RUN", uuid.uuid4().hex[:8])
SUITE_LOG = RUNS_DIR / f"suite-{SUITE_RUN}-{os.getpid()}.log"
_known_secrets: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    """Capture every log record of the whole suite (DEBUG and up) to one file per process, through the app's
    redaction."""
    from shared import logs

    RUNS_DIR.mkdir(exist_ok=True)
    handler = logging.FileHandler(SUITE_LOG, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logs.install()  # after the handler is added: it is what the filter goes on


def remember_secrets(manifest: dict) -> None:
    """Keys from an emulator manifest; the suite's log must never contain them."""
    for value in (manifest["workspace_token"], manifest["training_service"]["api_key"],
                  manifest["eventgrid"]["topic_key"], manifest["identity"]["header"]):
        _known_secrets.add(value)


def leaked_secrets(text: str) -> list[str]:
    found = [f"known secret {s[:4]}..." for s in _known_secrets if s in text]
    from tools.localdev.azurite import ACCOUNT_KEY

    if ACCOUNT_KEY in text:
        found.append("the storage account key")
    if re.search(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.", text):
        found.append("a bearer token (JWT)")
    for match in re.finditer(r"(?i)sig(=|%3D)([^&\s\"'<>]+)", text):
        if match.group(2).split("\\")[0] not in ("REDACTED", "***"):  # (a JSON escape may follow)
            found.append(f"a SAS signature ({match.group(0)[:12]}...)")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every process checks its own log against the secrets it saw; the controller (or a run without workers)
    fails the run when any process found one."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    if SUITE_LOG.exists():
        leaks = leaked_secrets(SUITE_LOG.read_text(encoding="utf-8", errors="replace"))
        if leaks:
            (RUNS_DIR / f"leaks-{SUITE_RUN}-{os.getpid()}.txt").write_text(
                f"{SUITE_LOG}:\n  " + "\n  ".join(sorted(set(leaks))[:20]) + "\n")
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller reports
    found = sorted(RUNS_DIR.glob(f"leaks-{SUITE_RUN}-*.txt"))
    if found:
        print("\nSECRETS IN THE SUITE'S LOGS:\n" + "".join(f.read_text() for f in found))
        session.exitstatus = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(PROJECT_ROOT / "tests").parts
        folder = parts[0] if len(parts) > 1 else "unit"
        marker = {"unit": "unit", "infra": "infra", "functions": "functions", "integration": "integration",
                  "contract": "contract", "e2e": "e2e"}.get(folder)
        if marker:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def run_dir() -> Path:
    path = RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def azurite(run_dir: Path) -> Iterator[Azurite]:
    server = Azurite(run_dir / "azurite")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture(scope="session")
def start_emulator(storage_connection_string: str, run_dir: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """Factory: start an emulator with extra CLI args; every one started is stopped at the end of the run."""
    started: list[EmulatorProcess] = []

    def start(*args: str, data_dir: Path | None = None, storage: str | None = None) -> EmulatorProcess:
        emu = EmulatorProcess(storage=storage or storage_connection_string,
                              workdir=run_dir / f"emulator-{uuid.uuid4().hex[:8]}", args=list(args),
                              data_dir=data_dir)
        started.append(emu)
        emu.start()
        remember_secrets(emu.manifest)
        return emu

    try:
        yield start
    finally:
        for emu in started:
            emu.stop()


@pytest.fixture(scope="session")
def shared_emulator(start_emulator: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    """One emulator for the contract tests that do not need special flags."""
    return start_emulator()
