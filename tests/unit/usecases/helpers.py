"""What the use-case tests share: landing a run's model, reading rejected/, interleaving a competing call at an exact
ledger write, and a virtual clock for the use cases' own waits (no test sleeps)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from shared.ports.blobs import REJECTED_INDEX
from shared.records import BlobRef, PromoteResult, Record, Run
from tests.fakes.world import World


def land(w: World, run: Run) -> PromoteResult:
    """The run's model landing in models/, as its blob trigger sees it."""
    result = w.app.model_landing.landed(BlobRef.parse(str(run.model_path)))
    assert result is not None
    return result


def reason_file(w: World, path: str) -> dict[str, Any]:
    """The reason file of what was moved to (or noted in) rejected/ as `rejected/<path>`."""
    data: dict[str, Any] = json.loads(w.storage.read_bytes(BlobRef(w.settings.rejected_container,
                                                                   path + ".reason.json")))
    return data


def rejected_names(w: World) -> list[str]:
    """The files and reason files in rejected/ (not its index)."""
    return [n for n in w.storage.names(w.settings.rejected_container) if not n.startswith(REJECTED_INDEX)]


def age_run(w: World, run_id: str, **fields: Any) -> None:
    """Time passing for a stored run (a lapsed claim, an old submission): its fields change, its etag does not -
    nobody wrote it."""
    stored = w.ledger.runs[run_id]
    for name, value in fields.items():
        setattr(stored, name, value)


@dataclass
class AtWrite:
    """Runs `action` once, at the first ledger write of `kind` that `when` accepts - before that write is made, so
    the action's own writes land between the caller's read and its conditional write."""

    kind: str
    action: Callable[[Record], object]
    when: Callable[[Record], bool] = lambda record: True
    fired: list[Record] = field(default_factory=list)

    def __call__(self, kind: str, record: Record) -> None:
        if self.fired or kind != self.kind or not self.when(record):
            return
        self.fired.append(record)
        self.action(record)


def at_write(w: World, kind: str, action: Callable[[Record], object],
             when: Callable[[Record], bool] = lambda record: True) -> AtWrite:
    hook = AtWrite(kind, action, when)
    w.ledger.on_write = hook
    return hook


class VirtualTime:
    """Stands in for the `time` module of a use case: `sleep` moves the clock on at once, and calls `on_sleep`
    (a test's chance to let a competitor act while the use case waits)."""

    def __init__(self, real: ModuleType, on_sleep: Callable[[float], None] | None = None) -> None:
        self._real = real
        self.offset = 0.0
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    def time(self) -> float:
        return float(self._real.time()) + self.offset

    def monotonic(self) -> float:
        return float(self._real.monotonic()) + self.offset

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.offset += seconds
        if self.on_sleep is not None:
            self.on_sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def virtual_time(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> VirtualTime:
    """One virtual clock for the `time` of each module given (e.g. shared.usecases.operations)."""
    import time

    clock = VirtualTime(time)
    for module in modules:
        monkeypatch.setattr(module, "time", clock)
    return clock


CLASSIC = {"kind": "classic", "management_key": "k", "resource_name": "trained model"}


def two_classic_targets() -> str:
    """RETRAIN_TARGETS: `default` takes every file, `eu` those under eu/ (two Studio (classic) services)."""
    return json.dumps([
        dict(CLASSIC, name="default", management_url="https://management.azureml.net/workspaces/w/webservices/a"),
        dict(CLASSIC, name="eu", data_prefix="eu", management_url="https://management.azureml.net/workspaces/w/"
                                                                  "webservices/b")])
