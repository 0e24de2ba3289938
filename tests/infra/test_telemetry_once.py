"""Telemetry is sent once in Azure: when the Python worker has configured the Azure Monitor distro itself
(PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true), the app does not configure a second exporter - it only adds its
scrubbing processors to the worker's providers. (infra/ never sets that setting; test_bicep checks host.json's
telemetryMode and PYTHON_ENABLE_OPENTELEMETRY, which keep the host from forwarding the same lines.)"""

from __future__ import annotations

from typing import Any

import pytest

import shared.telemetry as telemetry


class Provider:
    def __init__(self) -> None:
        self.added: list[Any] = []

    def add_span_processor(self, processor: Any) -> None:
        self.added.append(processor)

    def add_log_record_processor(self, processor: Any) -> None:
        self.added.append(processor)


def test_the_workers_own_distro_is_not_configured_twice(monkeypatch):
    import azure.monitor.opentelemetry as distro
    from opentelemetry import _logs, trace

    tracer, logger = Provider(), Provider()
    monkeypatch.setattr(telemetry, "_configured", False)
    monkeypatch.setattr("shared.logs.install", lambda: None)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tracer)
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: logger)
    monkeypatch.setattr(distro, "configure_azure_monitor",
                        lambda **_: pytest.fail("a second exporter: everything would be sent twice"))
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
           "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}
    assert telemetry.configure(env) is True
    assert [type(p).__name__ for p in tracer.added] == ["ScrubSpans"]
    assert [type(p).__name__ for p in logger.added] == ["ScrubLogRecords"]


def test_without_the_worker_distro_the_app_configures_its_exporter(monkeypatch):
    import azure.monitor.opentelemetry as distro

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(telemetry, "_configured", False)
    monkeypatch.setattr("shared.logs.install", lambda: None)
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kw: calls.append(kw))
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
           "PYTHON_ENABLE_OPENTELEMETRY": "true"}
    assert telemetry.configure(env) is True
    assert len(calls) == 1 and calls[0]["span_processors"] and calls[0]["log_record_processors"]
