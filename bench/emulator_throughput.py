"""Benchmark: the emulator's management API under 32 concurrent clients (client on the same machine).

Runs, in one go against one Azurite: GET endpoint and PATCH endpoint (swap the trained model) on N endpoints,
against an emulator that shares downloads of one SAS URL (ours) and one that downloads the model from storage
on every PATCH (naive). Prints requests/s and p50/p99 latency for each, and a profile of the PATCH path.

    python -m bench.emulator_throughput [--requests 4000] [--concurrency 32] [--endpoints 64] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import requests

from bench.common import library, trained_model
from tools.localdev.azurite import Azurite
from tools.localdev.emulator import EmulatorProcess


def setup(manifest: dict[str, Any], endpoints: int) -> tuple[list[str], dict[str, Any]]:
    """Create endpoints and train one model (through the library); return the endpoint URLs and the PATCH body."""
    app = library(manifest)
    target = app.settings.targets[0]
    mgmt = app.studio.management(target)
    names = [mgmt.create_endpoint(f"bench-{i}", "bench").Name for i in range(endpoints)]
    run = trained_model(app, rows=2000)
    assert run.job_id
    ref = (app.studio.bes(target).get(run.job_id).Results or {})["output1"]
    body = {"Resources": [{"Name": target.resource_name, "Location": {
        "BaseLocation": ref.BaseLocation, "RelativeLocation": ref.RelativeLocation, "SasBlobToken": ref.SasBlobToken}}]}
    app.close()
    return [f"{target.management_url}/endpoints/{n}" for n in names], body


async def drive(method: str, urls: list[str], token: str, body: dict[str, Any] | None, total: int,
                concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body else None
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                started = time.perf_counter()
                async with session.request(method, urls[i % len(urls)], data=data, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


def row(label: str, elapsed: float, latencies: list[float], errors: int) -> str:
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    return f"| {label:<42} | {len(lat) / elapsed:>9.0f} | {p50:>8.1f} | {p99:>8.1f} | {errors:>6} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--endpoints", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="profile the emulator's PATCH path in-process")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-emulator-"))
    with Azurite(work / "azurite") as azurite:
        ours = EmulatorProcess(azurite.connection_string, work / "ours").start()
        naive = EmulatorProcess(azurite.connection_string, work / "naive", args=["--sas-cache-seconds", "0"]).start()
        try:
            lines = ["| run (32 concurrent clients)                |   req/s   | p50 (ms) | p99 (ms) | errors |",
                     "|--------------------------------------------|-----------|----------|----------|--------|"]
            for label, emu in (("ours", ours), ("naive: download per PATCH", naive)):
                urls, body = setup(emu.manifest, args.endpoints)
                token = emu.manifest["workspace_token"]
                asyncio.run(drive("GET", urls, token, None, 200, args.concurrency))  # warm-up
                print(f"{label}: GET x{args.requests} ...", file=sys.stderr, flush=True)
                lines.append(row(f"GET endpoint ({label})", *asyncio.run(
                    drive("GET", urls, token, None, args.requests, args.concurrency))))
                print(f"{label}: PATCH x{args.requests} ...", file=sys.stderr, flush=True)
                lines.append(row(f"PATCH endpoint ({label})", *asyncio.run(
                    drive("PATCH", urls, token, body, args.requests, args.concurrency))))
        finally:
            ours.stop()
            naive.stop()
        print("\n".join(lines))
        print("\nGoal: >= 500 PATCH/s (ours), client and server on this machine.")
        if args.profile:
            profile_patch(azurite.connection_string, work, args)
    return 0


def profile_patch(storage: str, work: Path, args: argparse.Namespace) -> None:
    """Run the emulator in this process under cProfile while PATCHing, and print where the time goes."""
    import cProfile
    import pstats
    import threading

    from tools.emulator.server import Options, serve

    manifest_path = work / "profiled.json"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            loop.run_until_complete(_serve_until(Options(storage=storage, manifest=manifest_path), stop, ready))
        finally:
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(25)

    async def _serve_until(opts: Options, stop_event: asyncio.Event, ready_flag: threading.Event) -> None:
        started = asyncio.Event()
        task = asyncio.create_task(serve(opts, ready=started, stop=stop_event))
        await started.wait()
        ready_flag.set()
        await task

    thread = threading.Thread(target=run)
    thread.start()
    ready.wait(60)
    manifest = json.loads(manifest_path.read_text())
    urls, body = setup(manifest, args.endpoints)
    asyncio.run(drive("PATCH", urls, manifest["workspace_token"], body, args.requests // 2, args.concurrency))
    loop.call_soon_threadsafe(stop.set)
    thread.join()
    requests.Session().close()


if __name__ == "__main__":
    raise SystemExit(main())
