"""Benchmark: deploying one model to N endpoints, our fan-out beside a naive sequential loop and the ideal.

Against the emulator with an injected latency on every Studio call the deployment makes (GET endpoint, PATCH,
scoring). Ours is the library's real promotion path (ledger, lease, GET + the old model's answer, PATCH, verify
GET + smoke request); the naive loop makes the same Studio calls one after another (and no ledger writes).
Ideal = calls x latency / concurrency.
"Calls alone" makes the same Studio calls at the same concurrency with nothing else: what this machine allows.

    python -m bench.fanout [--sizes 10,100,1000] [--latency-ms 20] [--concurrency 16] [--naive-max 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from bench.common import CallCounter, library, trained_model
from shared.composition import Retraining
from shared.records import Run
from tools.localdev.azurite import Azurite
from tools.localdev.emulator import EmulatorProcess

SMOKE = {"age": "39", "workclass": "State-gov", "fnlwgt": "77516", "education": "Bachelors", "education-num": "13",
         "marital-status": "Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family",
         "race": "White", "sex": "Male", "capital-gain": "0", "capital-loss": "0", "hours-per-week": "40",
         "native-country": "United-States"}


def create_endpoints(app: Retraining, n: int, prefix: str) -> list[str]:
    mgmt = app.studio.management(app.settings.targets[0])
    names = [f"{prefix}{i}" for i in range(n)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: mgmt.create_endpoint(name, "bench"), names))
    return names


def naive(app: Retraining, endpoints: list[str], model_path: str) -> float:
    target = app.settings.targets[0]
    mgmt = app.studio.management(target)
    started = time.perf_counter()
    location = app.storage.minter.location(model_path, timedelta(hours=1))
    for name in endpoints:
        one_by_one(app, mgmt, target.resource_name, name, location)
    return time.perf_counter() - started


def one_by_one(app: Retraining, mgmt: Any, resource: str, name: str, location: Any) -> None:
    """The Studio calls of one deployment: GET, the old model's answer, PATCH, GET, the new model's answer."""
    before = mgmt.get_endpoint(name)
    app.studio.scoring(before.ApiLocation or "", before.PrimaryKey or "").score([SMOKE])
    mgmt.patch_model(name, resource, location)
    ep = mgmt.get_endpoint(name)
    app.studio.scoring(ep.ApiLocation or "", ep.PrimaryKey or "").score([SMOKE])


def studio_only(app: Retraining, endpoints: list[str], model_path: str, concurrency: int) -> float:
    """The same Studio calls at the same concurrency, with no ledger, no verification logic: this machine's floor."""
    target = app.settings.targets[0]
    mgmt = app.studio.management(target)
    location = app.storage.minter.location(model_path, timedelta(hours=1))

    def one(name: str) -> None:
        one_by_one(app, mgmt, target.resource_name, name, location)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, endpoints))
    return time.perf_counter() - started


def ours(app: Retraining, counter: CallCounter, endpoints: list[str],
         model_path: str) -> tuple[float, int, dict[str, int]]:
    run = Run(id=f"bench-{uuid.uuid4().hex[:8]}", kind="manual", status="Trained", target="default",
              endpoints=endpoints, model_path=model_path, smoke_row=SMOKE, trigger="bench")
    app.ledger.create_run(run)
    start_calls = counter.calls
    started = time.perf_counter()
    result = app.promotion.promote(run, force=True)
    elapsed = time.perf_counter() - started
    outcomes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for e in result.endpoints:
        outcomes[e.outcome] = outcomes.get(e.outcome, 0) + 1
        if e.outcome != "Deployed":
            reasons[str(e.reason)[:160]] = reasons.get(str(e.reason)[:160], 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  not deployed ({count}x): {reason}", file=sys.stderr)
    return elapsed, counter.calls - start_calls, outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--naive-max", type=int, default=1000, help="skip the naive loop above this N")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    rows = []
    with Azurite(work / "azurite") as azurite, EmulatorProcess(azurite.connection_string, work / "emu") as emu:
        app = library(emu.manifest, RETRAIN_PATCH_CONCURRENCY=str(args.concurrency),
                      RETRAIN_SMOKE_ROW=json.dumps(SMOKE), RETRAIN_EVENTGRID_ENDPOINT="", RETRAIN_EVENTGRID_KEY="")
        counter = CallCounter(app)
        print("training a model ...", file=sys.stderr, flush=True)
        model_path = str(trained_model(app).model_path)
        admin = emu.manifest["admin_url"]
        for n in sizes:
            print(f"N={n}: creating endpoints ...", file=sys.stderr, flush=True)
            endpoints = create_endpoints(app, n, f"b{n}x")
            requests.post(f"{admin}/faults", json=[
                {"route": r, "latency_ms": args.latency_ms} for r in
                ("management.get_endpoint", "management.patch_endpoint", "rrs.execute")], timeout=10)
            print(f"N={n}: ours ...", file=sys.stderr, flush=True)
            t_ours, calls, outcomes = ours(app, counter, endpoints, model_path)
            ideal = calls * args.latency_ms / 1000 / args.concurrency
            print(f"N={n}: the Studio calls alone, concurrently ...", file=sys.stderr, flush=True)
            t_floor = studio_only(app, endpoints, model_path, args.concurrency)
            t_naive = None
            if n <= args.naive_max:
                print(f"N={n}: naive sequential loop ...", file=sys.stderr, flush=True)
                t_naive = naive(app, endpoints, model_path)
            requests.delete(f"{admin}/faults", timeout=10)
            rows.append((n, calls, t_ours, ideal, t_floor, t_naive, outcomes))
    print(f"\nFan-out of one model to N endpoints; {args.latency_ms:g} ms injected per Studio call; "
          f"concurrency {args.concurrency}")
    print("|     N | Studio calls | ours (s) | ideal (s) | ours/ideal | calls alone (s) | naive loop (s) | naive/ours "
          "| outcomes |")
    print("|-------|--------------|----------|-----------|------------|-----------------|----------------|------------"
          "|----------|")
    for n, calls, t_ours, ideal, t_floor, t_naive, outcomes in rows:
        naive_s = f"{t_naive:14.2f}" if t_naive is not None else f"{'-':>14}"
        ratio = f"{t_naive / t_ours:10.1f}x" if t_naive is not None else f"{'-':>11}"
        print(f"| {n:5d} | {calls:12d} | {t_ours:8.2f} | {ideal:9.2f} | {t_ours / ideal:9.2f}x | {t_floor:15.2f} | "
              f"{naive_s} | {ratio} | {outcomes} |")
    print("\nGoal at N=1000: ours within 1.5x of ideal, and >= 10x faster than the naive loop.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
