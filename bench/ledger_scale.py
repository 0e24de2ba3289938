"""`python -m bench.ledger_scale`: reconcile and GET /api/runs?limit=50 with 1,000 and with 100,000 finished runs
in the ledger (10 active runs each time), the indexed ledger beside the full scan it replaced, in one run.

Each size gets its own tables in one Azurite (in-memory): the finished runs are written in batches of 100 (entity
group transactions), with their index rows as the app writes them; then 10 active runs through the ledger.
Reconcile is the library's whole pass (the 10 runs are AwaitingApproval and not yet due, so it reads them and
moves on: what is timed is the ledger's cost). `GET /api/runs?limit=50` is the HTTP function called in-process
with a real `azure.functions.HttpRequest`. "full scan" times the same two questions the way the ledger answered
them before the index (every run read and sorted in memory). Median of --repeat timings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import library
from shared.adapters.ledger import to_entity
from shared.adapters.run_index import newest_row
from shared.composition import Retraining
from shared.decisions import ACTIVE_RUN_STATUSES
from shared.records import Run, iso
from tools.localdev.azurite import Azurite
from tools.localdev.emulator import EmulatorProcess


def fill(app: Retraining, finished: int, active: int = 10) -> None:
    """`finished` Deployed runs (batched, index rows included) and `active` AwaitingApproval runs."""
    table = app.ledger.runs
    start = datetime.now(UTC) - timedelta(days=400)
    written = 0
    while written < finished:
        batch = []
        for i in range(written, min(written + 100, finished)):
            created = iso(start + timedelta(seconds=i * 5))
            batch.append(Run(id=f"done{i:07d}{uuid.uuid4().hex[:6]}", status="Deployed", target="default",
                             created_at=created, updated_at=created, promoted=True))
        table.submit_transaction([("create", to_entity(r, "run", r.id)) for r in batch])
        table.submit_transaction([("create", newest_row(r)) for r in batch])
        written += len(batch)
        print(f"\r  writing {finished:,} finished runs: {written:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for _ in range(active):
        app.ledger.create_run(Run(id=uuid.uuid4().hex, status="AwaitingApproval", target="default"))


def http_runs(limit: int) -> Callable[[], Any]:
    """GET /api/runs?limit=N: the app's HTTP function, called as the host calls it."""
    import azure.functions as func

    from blueprints import http_api
    from tools.devhost.invoke import DevContext

    user_function = http_api.runs_list.build().get_user_function()

    def call() -> Any:
        req = func.HttpRequest("GET", "/api/runs", params={"limit": str(limit)}, body=b"")
        resp = user_function(req, context=DevContext("runs_list", "/app"))
        assert resp.status_code == 200, resp.get_body()[:300]
        assert len(__import__("json").loads(resp.get_body())["runs"]) == limit
        return resp

    return call


def timed(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm: connections, the sweep of the day
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(app: Retraining, repeat: int) -> dict[str, float]:
    import blueprints.runtime as runtime

    original = getattr(runtime, "_retraining")  # noqa: B009 - the factory the HTTP functions call: this app instead
    setattr(runtime, "_retraining", lambda interactive=False: app)  # noqa: B010
    try:
        listing = http_runs(50)
        ours = {"reconcile": timed(app.reconciler.reconcile, repeat), "runs?limit=50": timed(listing, repeat)}
    finally:
        setattr(runtime, "_retraining", original)  # noqa: B010
    led = app.ledger
    naive = {"reconcile": timed(lambda: led._scan_unfinished(ACTIVE_RUN_STATUSES), repeat),
             "runs?limit=50": timed(lambda: led._scan_runs(None, 50), repeat)}
    return {**{f"{k} (indexed)": v for k, v in ours.items()}, **{f"{k} (full scan)": v for k, v in naive.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            Azurite(Path(tmp) / "azurite", extra_args=["--inMemoryPersistence"]) as azurite, \
            EmulatorProcess(azurite.connection_string, Path(tmp) / "emulator") as emulator:
        for size in sizes:
            app = library(emulator.manifest, RETRAIN_APPROVAL="manual")
            fill(app, size)
            results[size] = measure(app, args.repeat)
            print(f"  {size:,} runs measured", file=sys.stderr)
    names = list(results[sizes[0]])
    width = max(len(n) for n in names) + 2
    print(f"\n{'question':<{width}}" + "".join(f"{f'{s:,} runs':>16}" for s in sizes) +
          (f"{'ratio':>10}" if len(sizes) == 2 else ""))
    for name in names:
        row = f"{name:<{width}}" + "".join(f"{results[s][name] * 1000:>13.1f} ms" for s in sizes)
        if len(sizes) == 2:
            row += f"{results[sizes[1]][name] / results[sizes[0]][name]:>9.2f}x"
        print(row)
    print("\nratio = time at the larger ledger / time at the smaller; the issue asks <= 1.5x for the indexed rows.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
