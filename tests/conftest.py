"""Shared fixtures: one Azurite for the whole run (free ports, own data folder, stopped whatever happens) and
emulators started on demand. Tests are marked unit / integration / e2e by the folder they live in."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localdev.azurite import PROJECT_ROOT, Azurite
from localdev.emulator import EmulatorProcess

RUNS_DIR = PROJECT_ROOT / ".test-runs"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(PROJECT_ROOT / "tests").parts
        folder = parts[0] if len(parts) > 1 else "unit"
        marker = {"unit": "unit", "functions": "unit", "integration": "integration", "e2e": "e2e"}.get(folder)
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
        return emu.start()

    try:
        yield start
    finally:
        for emu in started:
            emu.stop()


@pytest.fixture(scope="session")
def shared_emulator(start_emulator: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    """One emulator for the contract tests that do not need special flags."""
    return start_emulator()
