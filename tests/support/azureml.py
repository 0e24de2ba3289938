"""The Azure ML stand-in for the suite: one emulator over HTTPS (as ARM is) with fast timings, shared by the
stand-in's contract tests and the app's azureml adapters; `aml_harness(**settings)` is the library wired to it
with an azureml target (the local managed identity, the local CA trusted)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.localdev.appsettings import azureml_settings
from tools.localdev.emulator import EmulatorProcess
from tools.localdev.tls import LocalTls

FAST = ["--azureml-time", "deployment_create=0.4", "--azureml-time", "deployment_update=0.3",
        "--azureml-time", "endpoint_create=0.2", "--azureml-time", "endpoint_update=0.2"]


@pytest.fixture(scope="session")
def aml_tls(run_dir: Path) -> LocalTls:
    return LocalTls.make(run_dir / "azureml-tls")


@pytest.fixture(scope="session")
def aml_emulator(start_emulator: Callable[..., EmulatorProcess], aml_tls: LocalTls) -> EmulatorProcess:
    return start_emulator("--tls-cert", str(aml_tls.cert), "--tls-key", str(aml_tls.key), *FAST)


@pytest.fixture
def aml_harness(monkeypatch: pytest.MonkeyPatch, harness: Callable[..., Any], aml_emulator: EmulatorProcess,
                aml_tls: LocalTls) -> Iterator[Callable[..., Any]]:
    """`aml_harness(**overrides)`: a Harness whose one target is the stand-in's workspace (kind azureml). The
    identity and CA settings are the process environment's (monkeypatch, set up first: undone after the harness)."""

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        target = overrides.pop("azureml", {})
        env = azureml_settings({"RETRAIN_ENDPOINTS": overrides.get("RETRAIN_ENDPOINTS", "")}, aml_emulator.manifest,
                               str(aml_tls.ca), **target)
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CLIENT_ID", "REQUESTS_CA_BUNDLE"):
            monkeypatch.setenv(name, env.pop(name))
        made.append(harness(aml_emulator.manifest, **{**env, **overrides}))
        return made[-1]

    def clear() -> None:
        """The stand-in is shared by the session and has an instance quota, as the service does: endpoints (and their
        deployments) left by earlier tests are deleted, so no test is refused for the quota others used."""
        arm = made[0].app.services.serving(made[0].settings.targets[0]).arm
        for endpoint in arm.pages("/onlineEndpoints", "list endpoints"):
            with contextlib.suppress(Exception):
                arm.operation("DELETE", f"/onlineEndpoints/{endpoint['name']}", "delete endpoint", None, "location",
                              time.monotonic() + 30)

    make()  # a first harness (its tables are unused if the test makes its own) to clear with
    clear()
    yield make
    clear()
