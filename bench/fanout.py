"""Benchmark: deploying one model to N endpoints, our fan-out beside a naive sequential loop and the ideal.

Against the emulator with an injected latency on every Studio call the deployment makes (GET endpoint, PATCH,
scoring). Ours is the library's real promotion path (ledger, lease, GET + the old model's answer, PATCH, verify
GET + smoke request, a Retrain.EndpointUpdated event each through the outbox), run in a fresh child process per
size so its peak RSS is its own; afterwards every endpoint is checked: serving the model (Studio), Deployed in the
ledger with its lease released, and one event each on the topic. The naive loop makes the same Studio calls one
after another (and no ledger writes). Ideal = calls x latency / concurrency. "Calls alone" makes the same Studio
calls at the same concurrency with nothing else: what this machine allows. A service holds at most 10,000
endpoints (as Studio did): each size's endpoints are deleted after it is measured.

    python -m bench.fanout [--sizes 10,100,1000] [--endpoints 10000] [--latency-ms 20] [--concurrency 16]

With `--switch-seconds S` and/or `--instances N` (default 2): the queued fan-out (RETRAIN_FANOUT_MODE=queue) on N
devhost instances at the emulator's switch time S, beside today's single invocation at the same S
(bench/fanout_queued.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.common import CallCounter, PeakRss, library, trained_model
from shared.adapters.classic.models import ResourceLocation
from shared.composition import Retraining
from shared.ports.blobs import SasPurpose
from shared.records import BlobRef, Run
from tools.localdev.azurite import Azurite
from tools.localdev.emulator import EmulatorProcess

SERVICE_LIMIT = 10_000  # endpoints per web service, the default included
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
    location = serve_location(app, model_path)
    for name in endpoints:
        one_by_one(app, mgmt, str(target.resource_name), name, location)
    return time.perf_counter() - started


def serve_location(app: Retraining, model_path: str) -> ResourceLocation:
    """The PATCH location of a model with a fresh read grant, as the app's classic adapter makes it."""
    grant = app.storage.grant(BlobRef.parse(model_path), SasPurpose.SERVE_MODEL)
    return ResourceLocation(BaseLocation=grant.base, RelativeLocation=grant.path, SasBlobToken=grant.token)


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
    location = serve_location(app, model_path)

    def one(name: str) -> None:
        one_by_one(app, mgmt, str(target.resource_name), name, location)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, endpoints))
    return time.perf_counter() - started


def ours(app: Retraining, counter: CallCounter, endpoints: list[str],
         model_path: str) -> tuple[float, int, dict[str, int], str]:
    # "*": every endpoint of the service - how a fleet of thousands is named (a run records at most 1,000 by name);
    # the service holds exactly this size's endpoints.
    run = Run(id=f"bench-{uuid.uuid4().hex[:8]}", kind="manual", status="Trained", target="default",
              endpoints=["*"] if len(endpoints) > 1000 else endpoints, model_path=model_path, smoke_row=SMOKE,
              trigger="bench")
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
    return elapsed, counter.calls - start_calls, outcomes, run.id


def worker(args: argparse.Namespace) -> int:
    """One size's deployment in this (fresh) process; prints its figures as JSON."""
    manifest = json.loads(Path(args.manifest).read_text())
    app = library(manifest, RETRAIN_FANOUT_MODE="inline", RETRAIN_PATCH_CONCURRENCY=str(args.concurrency),
                  RETRAIN_SMOKE_ROW=json.dumps(SMOKE),
                  RETRAIN_TABLE_PREFIX=args.table_prefix, **({"RETRAIN_VERIFY_SWITCH_SECONDS": args.switch_seconds}
                                                              if args.switch_seconds else {}))
    counter = CallCounter(app)
    endpoints = [f"{args.prefix}{i}" for i in range(args.count)]
    with PeakRss() as rss:
        elapsed, calls, outcomes, run_id = ours(app, counter, endpoints, args.model)
    print(json.dumps({"elapsed": elapsed, "calls": calls, "outcomes": outcomes, "run_id": run_id,
                      "rss_before_mb": rss.before, "rss_peak_mb": rss.peak}))
    return 0


def run_worker(manifest_path: Path, table_prefix: str, prefix: str, count: int, model: str,
               concurrency: int, switch: float | None = None) -> dict[str, Any]:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "bench.fanout", "--worker", "--manifest", str(manifest_path),
                           "--table-prefix", table_prefix, "--prefix", prefix, "--count", str(count),
                           "--model", model, "--concurrency", str(concurrency),
                           *(["--switch-seconds", f"{switch:g}"] if switch is not None else [])],
                          capture_output=True, text=True, timeout=3600)
    sys.stderr.write(done.stderr[-2000:])
    if done.returncode != 0:
        raise RuntimeError(f"the fan-out worker failed ({done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def check(app: Retraining, admin: str, endpoints: list[str], model_path: str, run_id: str) -> dict[str, int]:
    """Every endpoint serves the model, is Deployed in the ledger with no lease held, and got one event."""
    target = app.settings.targets[0]
    mgmt = app.studio.management(target)
    with ThreadPoolExecutor(16) as pool:
        serving = list(pool.map(lambda n: mgmt.get_endpoint(n).model_path(str(target.resource_name)), endpoints))
    currents = app.ledger.currents(target.name)
    events = requests.get(f"{admin}/eventgrid/topics/retrain/events", timeout=60).json()
    updated = {e["event"]["data"]["endpoint"] for e in events if e["event"]["type"] == "Retrain.EndpointUpdated"
               and e["event"]["data"].get("runId") == run_id}
    return {"serving the model": sum(s == model_path for s in serving),
            "ledger Deployed": sum(1 for n in endpoints if currents.get(n) and currents[n].run_id == run_id),
            "leases held": sum(1 for n in endpoints if currents.get(n) and currents[n].lease_owner),
            "events": len(updated & set(endpoints))}


def delete_endpoints(app: Retraining, endpoints: list[str]) -> None:
    mgmt = app.studio.management(app.settings.targets[0])
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: mgmt.http.request("DELETE", mgmt._ep(n), f"delete endpoint {n}", mgmt._key,
                                                  expect=(200, 204)), endpoints))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--endpoints", type=int, help="add this size too (e.g. 10000), measured after 1,000")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--naive-max", type=int, default=1000, help="skip the naive loop above this N")
    parser.add_argument("--switch-seconds", help="the emulator's switch time (--propagation-seconds); with "
                        "--instances, RETRAIN_VERIFY_SWITCH_SECONDS too")
    parser.add_argument("--instances", type=int, default=0, help="the queued fan-out on N host instances, beside "
                        "today's single invocation (bench/fanout_queued.py)")
    parser.add_argument("--inline-max", type=int, default=100, help="with --instances: measure the single "
                        "invocation up to this N, compute it beyond")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--manifest", "--table-prefix", "--prefix", "--model"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.instances or args.switch_seconds:
        from bench.fanout_queued import main_queued

        args.instances = args.instances or 2
        args.switch_seconds = args.switch_seconds or "0"
        return main_queued(args)
    sizes = sorted({int(s) for s in args.sizes.split(",")} | ({1000, args.endpoints} if args.endpoints else set()))
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    rows = []
    # In-memory: Azurite persisting to disk re-serialises its whole database every few seconds, a cost that grows
    # with the tables (not the product's: the table service has no such thing).
    with Azurite(work / "azurite", extra_args=["--inMemoryPersistence"]) as azurite, \
            EmulatorProcess(azurite.connection_string, work / "emu") as emu:
        table_prefix = f"fan{uuid.uuid4().hex[:8]}"
        app = library(emu.manifest, RETRAIN_FANOUT_MODE="inline", RETRAIN_PATCH_CONCURRENCY=str(args.concurrency),
                      RETRAIN_SMOKE_ROW=json.dumps(SMOKE), RETRAIN_TABLE_PREFIX=table_prefix)
        print("training a model ...", file=sys.stderr, flush=True)
        model_path = str(trained_model(app).model_path)
        admin = emu.manifest["admin_url"]
        for n in sizes:
            print(f"N={n}: creating endpoints ...", file=sys.stderr, flush=True)
            # A web service holds 10,000 endpoints, its default included (never patched): at the limit, the
            # default + 9,999 endpoints is the whole service.
            endpoints = create_endpoints(app, min(n, SERVICE_LIMIT - 1), f"b{n}x")
            requests.delete(f"{admin}/eventgrid/topics/retrain/events", timeout=10)
            requests.post(f"{admin}/faults", json=[
                {"route": r, "latency_ms": args.latency_ms} for r in
                ("management.get_endpoint", "management.patch_endpoint", "rrs.execute")], timeout=10)
            print(f"N={n}: ours (a fresh process) ...", file=sys.stderr, flush=True)
            got = run_worker(emu.manifest_path, table_prefix, f"b{n}x", len(endpoints), model_path, args.concurrency)
            ideal = got["calls"] * args.latency_ms / 1000 / args.concurrency
            requests.delete(f"{admin}/faults", timeout=10)
            verified = check(app, admin, endpoints, model_path, got["run_id"])
            requests.post(f"{admin}/faults", json=[
                {"route": r, "latency_ms": args.latency_ms} for r in
                ("management.get_endpoint", "management.patch_endpoint", "rrs.execute")], timeout=10)
            t_floor = t_naive = None
            if n <= args.naive_max:
                print(f"N={n}: the Studio calls alone, concurrently ...", file=sys.stderr, flush=True)
                t_floor = studio_only(app, endpoints, model_path, args.concurrency)
                print(f"N={n}: naive sequential loop ...", file=sys.stderr, flush=True)
                t_naive = naive(app, endpoints, model_path)
            requests.delete(f"{admin}/faults", timeout=10)
            print(f"N={n}: deleting its endpoints ...", file=sys.stderr, flush=True)
            delete_endpoints(app, endpoints)
            rows.append((n, got, ideal, t_floor, t_naive, verified))
    print(f"\nFan-out of one model to N endpoints; {args.latency_ms:g} ms injected per Studio call; "
          f"concurrency {args.concurrency}")
    print("|     N | Studio calls | ours (s) | ideal (s) | ours/ideal | calls alone (s) | naive loop (s) | naive/ours "
          "| peak RSS (MB) | verified (serving / Deployed / events / leases held) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, got, ideal, t_floor, t_naive, verified in rows:
        t_ours = got["elapsed"]
        floor_s = f"{t_floor:.2f}" if t_floor is not None else "-"
        naive_s = f"{t_naive:.2f}" if t_naive is not None else "-"
        ratio = f"{t_naive / t_ours:.1f}x" if t_naive is not None else "-"
        label = f"{n} (default + {n - 1})" if n >= SERVICE_LIMIT else str(n)
        print(f"| {label} | {got['calls']} | {t_ours:.2f} | {ideal:.2f} | {t_ours / ideal:.2f}x | {floor_s} "
              f"| {naive_s} | {ratio} | {got['rss_peak_mb']:.0f} | {verified['serving the model']} / "
              f"{verified['ledger Deployed']} / {verified['events']} / {verified['leases held']} |")
    by_size = {n: got for n, got, *_ in rows}
    if 1000 in by_size and args.endpoints and args.endpoints in by_size and args.endpoints != 1000:
        big, small = by_size[args.endpoints], by_size[1000]
        print(f"\n{args.endpoints:,} vs 1,000: time {big['elapsed'] / small['elapsed']:.2f}x "
              f"(endpoints {args.endpoints / 1000:.0f}x), peak RSS {big['rss_peak_mb'] / small['rss_peak_mb']:.2f}x")
    print("\nGoals: at N=1000 ours within 1.5x of ideal and >= 10x faster than the naive loop; at 10,000 every "
          "endpoint verified, time <= 11x and peak RSS <= 1.5x those at 1,000.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
