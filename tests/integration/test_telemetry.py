"""Telemetry through azure-monitor-opentelemetry to a local collector: with APPLICATIONINSIGHTS_CONNECTION_STRING
pointing at a loopback HTTP receiver, a deployment's log records, spans and Retrain.* custom events are exported,
and none carries a key, a SAS signature or a bearer token. The app runs in a child process (the distro configures
process-wide providers), against the shared Azurite and emulator."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import leaked_secrets, remember_secrets
from tools.localdev.appsettings import settings_from_manifest
from tools.localdev.azurite import PROJECT_ROOT

CHILD = r"""
import logging, sys, uuid
from shared import logs, telemetry
assert telemetry.configure()
from shared.composition import Retraining
from shared.settings import get_settings
logs.install()
logging.getLogger().setLevel(logging.INFO)  # as the Functions worker sets it
app = Retraining(get_settings())
app.ensure_storage()
name = "tel" + uuid.uuid4().hex[:8]
with telemetry.span("endpoints_create"):
    app.operations.add_endpoint(name, "telemetry test")
from shared.records import BlobRef
initial = app.storage.read_bytes(BlobRef("experimentoutput", "initial/census-model.ilearner"))
app.storage.create(BlobRef("models", f"{name}/copy.ilearner"), initial, "application/octet-stream")
with telemetry.span("endpoint_patch"):
    result = app.operations.patch_model(None, name, f"models/{name}/copy.ilearner", force=True)
print("OUTCOME", result.outcome)
logging.getLogger("shared.test").info("deployed to %s: %s", name, result.outcome)
try:
    raise RuntimeError("boom with " + get_settings().management_key.get_secret_value() + " and sig=abcdefgh12")
except RuntimeError:
    logging.getLogger("shared.test").exception("a failure quoting a key and a SAS signature")
telemetry.flush()
"""


class Collector(ThreadingHTTPServer):
    envelopes: list[dict[str, Any]]
    raw: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip" or body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        text = body.decode("utf-8", errors="replace")
        self.server.raw.append(text)
        parsed = json.loads(text) if text.strip().startswith("[") else [json.loads(line) for line in
                                                                          text.splitlines() if line.strip()]
        self.server.envelopes.extend(parsed)
        answer = json.dumps({"itemsReceived": len(parsed), "itemsAccepted": len(parsed), "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector(("127.0.0.1", 0), _Handler)
    server.envelopes, server.raw = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


def test_a_deployments_logs_spans_and_events_reach_application_insights_without_secrets(collector, shared_emulator,
                                                                                           tmp_path):
    manifest = shared_emulator.manifest
    remember_secrets(manifest)
    port = collector.server_address[1]
    env = {**os.environ, **settings_from_manifest(manifest, RETRAIN_TABLE_PREFIX="tel",
                                                  RETRAIN_VERIFY_SWITCH_SECONDS="1"),
           "APPLICATIONINSIGHTS_CONNECTION_STRING":
               f"InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=http://127.0.0.1:{port}/;"
               f"LiveEndpoint=http://127.0.0.1:{port}/",
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",  # statsbeat would call Microsoft's endpoint
           "OTEL_TRACES_SAMPLER": "always_on",  # the distro's default samples 5 traces a second
           "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BLRP_SCHEDULE_DELAY": "200", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OUTCOME" in done.stdout
    kinds = [e.get("data", {}).get("baseType") for e in collector.envelopes]
    messages = [e["data"]["baseData"] for e in collector.envelopes if e["data"]["baseType"] == "MessageData"]
    exceptions = [e["data"]["baseData"] for e in collector.envelopes if e["data"]["baseType"] == "ExceptionData"]
    dependencies = [e["data"]["baseData"] for e in collector.envelopes
                    if e["data"]["baseType"] == "RemoteDependencyData"]
    events = [e["data"]["baseData"] for e in collector.envelopes if e["data"]["baseType"] == "EventData"]
    assert messages and dependencies and exceptions, sorted(set(kinds))
    names = sorted({str(d.get("name")) for d in dependencies})
    assert "endpoint_patch" in names and any(n.startswith("PATCH") for n in names), names
    assert any(e["name"].startswith("Retrain.") for e in events), [e.get("name") for e in events]
    everything = "\n".join(collector.raw)
    assert not leaked_secrets(everything), leaked_secrets(everything)
    assert "abcdefgh12" not in everything and "REDACTED" in everything
