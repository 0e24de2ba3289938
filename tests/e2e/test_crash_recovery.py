"""The function host killed at each step of the flow (issue 9): after a restart and a reconcile every endpoint
serves the newest good model, the ledger agrees with the service, no job ran twice and no event was lost.

The host dies through a failpoint (`RETRAIN_FAILPOINT`, `shared/failpoints.py`): `os._exit` at a named step, as a
SIGKILL would leave it - no cleanup, leases and claims held, work half done. Everything else is real: devhost as
a process, the emulator, Azurite."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.failpoints import EXIT_CODE, POINTS
from tests.e2e.conftest import Client, start_stack
from tools.emulator.census import csv_text


@pytest.fixture(scope="module")
def crash_client() -> Iterator[Client]:
    stack = start_stack("crash", RETRAIN_JOB_POLL_SECONDS="0.2", RETRAIN_LEASE_SECONDS="5")
    try:
        yield Client(stack)
    finally:
        stack.stop()


def run_for(client: Client, data_path: str) -> dict[str, Any] | None:
    runs = client.call("GET", "runs", params={"limit": "500"}).json()["runs"]
    return next((r for r in runs if r["dataPath"] == data_path), None)


@pytest.mark.parametrize("point", POINTS)
def test_a_host_killed_at_a_step_converges_after_restart_and_reconcile(crash_client: Client, point: str):
    client, stack = crash_client, crash_client.stack
    endpoints = [client.new_endpoint(f"k{i}") for i in range(3)]
    stack.restart_host(RETRAIN_FAILPOINT=point, RETRAIN_ENDPOINTS=",".join(endpoints),
                       RETRAIN_PATCH_CONCURRENCY="1" if point == "mid-fanout" else "16")
    data = f"crash-{point}-{uuid.uuid4().hex[:6]}.csv"
    client.upload("training-data", data, csv_text(2000, seed=len(point), drift=0.9).encode())
    client.wait_for(f"the host to die at {point}", lambda: stack.host_proc is not None and
                    stack.host_proc.poll() == EXIT_CODE, timeout=90)
    stack.restart_host(RETRAIN_FAILPOINT=None)
    admin = f"{stack.functions_url}/admin/functions/reconcile"
    last_reconcile = 0.0

    def converged() -> dict[str, Any] | None:
        nonlocal last_reconcile
        if time.monotonic() - last_reconcile > 3:  # the timer's work, on demand
            assert client.http.post(admin, json={}, timeout=30).status_code in (200, 202)
            last_reconcile = time.monotonic()
        run = run_for(client, f"training-data/{data}")
        if run is None or run["status"] != "Deployed":
            return None
        if any(client.serving(ep) != run["modelPath"] for ep in endpoints):
            return None
        return run

    run = client.wait_for(f"recovery from {point}", converged, timeout=150)
    for ep in endpoints:  # the ledger agrees with the service
        view = client.call("GET", f"endpoints/{ep}").json()
        assert view["current"]["runId"] == run["id"] and view["current"]["modelPath"] == client.serving(ep)
        assert view["history"][0]["outcome"] == "Deployed"
    jobs = client.http.get(f"{client.m['admin_url']}/jobs", timeout=30).json()
    assert len([j for j in jobs if j["input"] == f"training-data/{data}"]) == 1  # no job ran twice
    events = [e for e in client.events() if e["data"].get("runId") == run["id"]]
    types = [e["type"].removeprefix("Retrain.") for e in events]
    for expected in ("TrainingDataAccepted", "JobSubmitted", "JobFinished"):
        assert expected in types, (point, types)
    updated = {e["data"]["endpoint"] for e in events if e["type"] == "Retrain.EndpointUpdated"}
    assert updated == set(endpoints), (point, types)  # at least once each (the README says so)
