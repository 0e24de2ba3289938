"""What the two `make demo` stories share - Studio (classic) in demo.py, the Azure ML stand-in in demo_azureml.py:
the demo endpoint's name, the app's failure events, `DemoFailed`, the census rows scored before and after the
retrain, and `AppDemo`, the base of a story: its progress line, its calls to the app's HTTP API and the app's
events. What each story follows and reports between the data landing and the verification is its own.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import requests

from tools.emulator import census_schema
from tools.emulator.census import generate_rows
from tools.localdev.stack import Stack

ENDPOINT = "demo-tenant"
FAILURES = {"Retrain.TrainingDataRejected", "Retrain.JobFailed", "Retrain.ModelRejected",
            "Retrain.EndpointUpdateFailed", "Retrain.EndpointRolledBack"}


class DemoFailed(Exception):
    pass


def wall(iso: str) -> float:
    """An ISO 8601 UTC time (as events and the emulator write them) as a POSIX timestamp."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def census_sample() -> list[dict[str, Any]]:
    """Five drifted census rows without their label: what a story scores through the endpoint."""
    sample = [dict(zip(census_schema.COLUMNS, row, strict=True)) for row in generate_rows(5, seed=2026, drift=1.0)]
    for row in sample:
        row.pop(census_schema.LABEL)
    return sample


class AppDemo:
    """A story's dealings with the app: its HTTP API (`call`), its Event Grid topic (`events`), the progress line."""

    def __init__(self, stack: Stack, rows: int, timeout: float, t0: float, http: requests.Session) -> None:
        assert stack.emulator is not None
        self.stack, self.rows, self.timeout, self.t0 = stack, rows, timeout, t0
        self.api = f"{stack.functions_url}/api"
        self.http = http
        self.manifest = stack.emulator.manifest

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def call(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        resp = self.http.request(method, f"{self.api}{path}", timeout=120, **kw)
        if resp.status_code != expect:
            raise DemoFailed(f"{method} /api{path} answered {resp.status_code}, expected {expect}: {resp.text[:500]}")
        return resp.json()

    def events(self) -> list[dict[str, Any]]:
        """The events the app published on its `retrain` topic (as the emulator kept them)."""
        resp = self.http.get(f"{self.manifest['admin_url']}/eventgrid/topics/retrain/events", timeout=30)
        resp.raise_for_status()
        return [item["event"] for item in resp.json()]

    def not_verified(self, run: dict[str, Any] | None) -> DemoFailed:
        """The failure when `follow` runs out of time."""
        return DemoFailed(f"the endpoint was not verified on the new model within {self.timeout:.0f} s of the data "
                          f"landing (last run state: {run['status'] if run else 'no run yet'}); see "
                          f"{self.stack.workdir / 'functions.log'}")

    def verified_event(self, run: dict[str, Any] | None) -> dict[str, Any] | None:
        """The app's Retrain.EndpointUpdated event of `run` for the demo endpoint (None: not yet); a failure event of
        the run raises DemoFailed."""
        for event in self.events():
            data = event.get("data") or {}
            if run is None or data.get("runId") != run["id"]:
                continue
            if event["type"] in FAILURES:
                raise DemoFailed(f"{event['type']}: {data.get('reason') or data.get('message') or data}")
            if event["type"] == "Retrain.EndpointUpdated" and data.get("endpoint") == ENDPOINT:
                return event
        return None

    def print_history(self, run: dict[str, Any], events_title: str) -> None:
        """The part of a story's report both tell alike: the endpoint's ledger history, the run's metrics and the
        events the app published (under `events_title`)."""
        view = self.call("GET", f"/endpoints/{ENDPOINT}", 200)
        print(f"\nLedger history of '{ENDPOINT}' (newest first):")
        for dep in view["history"]:
            metric = f"{dep['metric']:.4f}" if dep.get("metric") is not None else "-"
            print(f"  {dep['createdAt']}  {dep['operation']:<8} {dep['outcome']:<10} AUC {metric:<7} "
                  f"{dep.get('modelPath') or '(no model)'}")
        print(f"\nRun {run['id']}: {run['status']}, metrics "
              + ", ".join(f"{k} {v:.4f}" for k, v in sorted((run.get("metrics") or {}).items())))
        print(f"\n{events_title}")
        for event in self.events():
            print(f"  {event.get('time', '')[:23]}  {event['type']:<30} {event.get('subject', '')}")
