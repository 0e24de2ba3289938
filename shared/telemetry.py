"""Telemetry to Application Insights through azure-monitor-opentelemetry, on when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set (imported only then: it adds to a cold start).

What goes out: the app's log records (and the Azure SDKs' warnings), spans for each function invocation and for
every HTTP call it makes (Studio, storage, Event Grid - as dependencies), and each `Retrain.*` outcome as a custom
event (`microsoft.custom_event.name`). With `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
(`ClientId=<id>;Authorization=AAD`) the exporter authenticates with that managed identity, so the component can
have local auth disabled.

Secrets never leave: the log scrubbing filter sits on the exporter's handler (`logs.install()` after it is
added), a log record processor scrubs the body and the exception attributes the exporter records from the
exception itself, and a span processor scrubs string attributes (URLs) as each span starts.

Sent once, not twice: in Azure the host would also forward every log line the worker writes to Application
Insights. infra/ sets host.json's `telemetryMode: OpenTelemetry` and `PYTHON_ENABLE_OPENTELEMETRY=true`: the worker
then tells the host it exports itself, and the host drops those lines. `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`
must stay unset: with it the worker configures the distro on its own before the app loads, and configuring it again
here would export everything twice - so then only the scrubbing processors are added to the worker's providers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import shared.logs as logs

_configured = False


def _identity(authentication: str | None) -> Any:
    """The exporter's Entra ID credential from `ClientId=<id>;Authorization=AAD`, else None (the key in the
    connection string)."""
    if not authentication:
        return None
    parts = dict(p.split("=", 1) for p in authentication.split(";") if "=" in p)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=parts.get("ClientId") or None)


def _processors() -> tuple[Any, Any]:
    from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
    from opentelemetry.sdk.trace import Span, SpanProcessor

    class ScrubSpans(SpanProcessor):
        """String attributes set when a span starts (the URL of an HTTP call) are scrubbed before it records."""

        def on_start(self, span: Span, parent_context: Any = None) -> None:
            for key, value in dict(span.attributes or {}).items():
                if isinstance(value, str) and logs.scrub(value) != value:
                    span.set_attribute(key, logs.scrub(value))

    class ScrubLogRecords(LogRecordProcessor):
        """The body and string attributes (exception.message, exception.stacktrace) of each exported record."""

        def on_emit(self, log_record: ReadWriteLogRecord) -> None:
            record = log_record.log_record
            if isinstance(record.body, str):
                record.body = logs.scrub(record.body)
            for key, value in dict(record.attributes or {}).items():
                if isinstance(value, str) and record.attributes is not None:
                    record.attributes[key] = logs.scrub(value)  # type: ignore[index]

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return ScrubSpans(), ScrubLogRecords()


def worker_exports(environ: Mapping[str, str]) -> bool:
    """The Python worker configured the Azure Monitor distro itself (it does when this setting is true)."""
    return environ.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "").strip().lower() == "true"


def _scrub_existing_providers(spans: Any, records: Any) -> None:
    """Add the scrubbing processors to the providers the worker's distro installed (no second exporter)."""
    from opentelemetry import _logs, trace

    for provider, add, processor in ((trace.get_tracer_provider(), "add_span_processor", spans),
                                     (_logs.get_logger_provider(), "add_log_record_processor", records)):
        method = getattr(provider, add, None)
        if method is not None:
            method(processor)


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Send telemetry to Application Insights when a connection string is set; True when on. Once per process."""
    global _configured
    env = os.environ if environ is None else environ
    connection = env.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if not connection or _configured:
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    # The exporter's own HTTP calls must not log at INFO: each line would be exported by another call.
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.monitor.opentelemetry", "urllib3",
                  "azure.identity"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    spans, records = _processors()
    if worker_exports(env):
        _scrub_existing_providers(spans, records)
        logs.install()
        _configured = True
        return True
    configure_azure_monitor(connection_string=connection,
                            credential=_identity(env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")),
                            span_processors=[spans], log_record_processors=[records], enable_live_metrics=False)
    logs.install()  # the exporter's handler on the root logger gets the scrubbing filter too
    _configured = True
    return True


@contextlib.contextmanager
def span(name: str, **attributes: str) -> Iterator[None]:
    """A span around one piece of work (a function invocation) when telemetry is on; nothing otherwise."""
    if not _configured:
        yield
        return
    from opentelemetry import trace

    with trace.get_tracer("retrain").start_as_current_span(name, attributes=attributes):
        yield


def flush() -> None:
    """Export what is buffered (before a process exits)."""
    if not _configured:
        return
    from opentelemetry import _logs, trace

    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider()):
        force = getattr(provider, "force_flush", None)
        if force is not None:
            force()
