"""The Azure ML stand-in for the suite: one emulator over HTTPS (as ARM is) with fast timings, shared by the
stand-in's contract tests and the app's azureml adapters; `aml_harness(**settings)` is the library wired to it
with an azureml target (the local managed identity, the local CA trusted)."""

from __future__ import annotations

from collections.abc import Callable
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
                aml_tls: LocalTls) -> Callable[..., Any]:
    """`aml_harness(**overrides)`: a Harness whose one target is the stand-in's workspace (kind azureml). The
    identity and CA settings are the process environment's (monkeypatch, set up first: undone after the harness)."""

    def make(**overrides: Any) -> Any:
        target = overrides.pop("azureml", {})
        env = azureml_settings({"RETRAIN_ENDPOINTS": overrides.get("RETRAIN_ENDPOINTS", "")}, aml_emulator.manifest,
                               str(aml_tls.ca), **target)
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CLIENT_ID", "REQUESTS_CA_BUNDLE"):
            monkeypatch.setenv(name, env.pop(name))
        return harness(aml_emulator.manifest, **{**env, **overrides})

    return make
