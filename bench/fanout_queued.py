"""The queued fan-out (RETRAIN_FANOUT_MODE=queue) for bench.fanout: N host instances (devhost processes with
`--queues-only`, as instances the platform scaled out to), the promotion started by one call that only sends the
batches, and the time until the run is final - every endpoint proven after the emulator's switch time. Peak RSS
is sampled per instance (psutil)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from shared.composition import Retraining
from shared.records import Run
from tools.localdev.appsettings import settings_from_manifest

ROOT = Path(__file__).resolve().parent.parent
NEVER = "0 0 0 1 1 *"  # the reconcile timer never fires in the bench (the instances run queue triggers only)


def queue_settings(switch: float, concurrency: int, smoke: dict[str, str], table_prefix: str) -> dict[str, str]:
    return {"RETRAIN_FANOUT_MODE": "queue", "RETRAIN_VERIFY_SWITCH_SECONDS": f"{switch:g}",
            "RETRAIN_PATCH_CONCURRENCY": str(concurrency), "RETRAIN_SMOKE_ROW": json.dumps(smoke),
            "RETRAIN_TABLE_PREFIX": table_prefix, "RETRAIN_RECONCILE_SCHEDULE": NEVER, "RETRAIN_ENDPOINTS": "none"}


class Instances:
    """N devhost processes taking the work queue's messages, and their peak RSS."""

    def __init__(self, manifest: dict[str, Any], count: int, settings: dict[str, str], log_dir: Path) -> None:
        env = {**os.environ, **settings_from_manifest(manifest, **settings), "PYTHONUNBUFFERED": "1"}
        self.logs = [open(log_dir / f"instance-{i}.log", "wb") for i in range(count)]  # noqa: SIM115
        self.procs = [subprocess.Popen([sys.executable, "-m", "tools.devhost", "--queues-only", "--script-root",
                                        str(ROOT), "--settings", "no-local-settings.json", "--log-level",
                                        "WARNING"], env=env, cwd=ROOT, stdout=log, stderr=log)
                      for log in self.logs]
        self.peak = [0.0] * count
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        import psutil

        handles = [psutil.Process(p.pid) for p in self.procs]
        while not self._stop.wait(0.1):
            for i, h in enumerate(handles):
                with contextlib.suppress(psutil.Error):
                    self.peak[i] = max(self.peak[i], h.memory_info().rss / 2**20)

    def ready(self, timeout: float = 60) -> None:
        """Wait until every instance has imported the app and listens (its RSS stops growing from the imports)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and min(self.peak) < 60:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"an instance exited ({p.returncode}); see its log")
            time.sleep(0.2)
        time.sleep(2)

    def stop(self) -> None:
        self._stop.set()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)
        for log in self.logs:
            log.close()


def queued(app: Retraining, manifest: dict[str, Any], endpoints: list[str], model_path: str, instances: int,
           settings: dict[str, str], smoke: dict[str, str], log_dir: Path, timeout: float = 900) -> dict[str, Any]:
    """One fan-out over the work queue; {"elapsed", "run_id", "outcomes", "rss_peak_mb": [per instance]}."""
    hosts = Instances(manifest, instances, settings, log_dir)
    try:
        hosts.ready()
        run = Run(id=f"bench-{uuid.uuid4().hex[:8]}", kind="manual", status="Trained", target="default",
                  endpoints=["*"] if len(endpoints) > 1000 else endpoints, model_path=model_path, smoke_row=smoke,
                  trigger="bench")
        app.ledger.create_run(run)
        started = time.perf_counter()
        app.promotion.promote(run, force=True)  # sends the batches; the instances do the rest
        sent = time.perf_counter() - started
        while True:
            stored = app.ledger.get_run(run.id)
            assert stored is not None
            if stored.status != "Deploying" or time.perf_counter() - started > timeout:
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
    finally:
        hosts.stop()
    return {"elapsed": elapsed, "dispatch": sent, "run_id": run.id, "status": stored.status,
            "outcomes": stored.outcomes, "rss_peak_mb": hosts.peak}


def main_queued(args: Any) -> int:
    """`--instances N`: per size, the queued fan-out on N instances beside today's single invocation (measured up to
    `--inline-max`, computed beyond from the per-endpoint time measured at the largest size it ran)."""
    import tempfile

    import requests

    from bench.common import library, trained_model
    from bench.fanout import SERVICE_LIMIT, SMOKE, check, create_endpoints, delete_endpoints, run_worker
    from tools.localdev.azurite import Azurite
    from tools.localdev.emulator import EmulatorProcess

    sizes = sorted({int(s) for s in args.sizes.split(",")} | ({args.endpoints} if args.endpoints else set()))
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-q-"))
    rows: list[tuple[int, dict[str, Any], dict[str, int], float | None, bool]] = []
    switch = float(args.switch_seconds)
    with Azurite(work / "azurite", extra_args=["--inMemoryPersistence"]) as azurite, \
            EmulatorProcess(azurite.connection_string, work / "emu",
                            args=["--propagation-seconds", f"{switch:g}"]) as emu:
        table_prefix = f"fan{uuid.uuid4().hex[:8]}"
        settings = queue_settings(switch, args.concurrency, SMOKE, table_prefix)
        app = library(emu.manifest, **settings)
        print("training a model ...", file=sys.stderr, flush=True)
        model_path = str(trained_model(app).model_path)
        admin = emu.manifest["admin_url"]
        faults = [{"route": r, "latency_ms": args.latency_ms} for r in
                  ("management.get_endpoint", "management.patch_endpoint", "rrs.execute")]
        per_endpoint: float | None = None
        for n in sizes:
            print(f"N={n}: creating endpoints ...", file=sys.stderr, flush=True)
            endpoints = create_endpoints(app, min(n, SERVICE_LIMIT - 1), f"q{n}x")
            requests.delete(f"{admin}/eventgrid/topics/retrain/events", timeout=10)
            requests.post(f"{admin}/faults", json=faults, timeout=10)
            print(f"N={n}: queued, {args.instances} instances ...", file=sys.stderr, flush=True)
            got = queued(app, emu.manifest, endpoints, model_path, args.instances, settings, SMOKE, work)
            requests.delete(f"{admin}/faults", timeout=10)
            verified = check(app, admin, endpoints, model_path, got["run_id"])
            inline: float | None = None
            if n <= args.inline_max:
                print(f"N={n}: today's single invocation (inline) ...", file=sys.stderr, flush=True)
                requests.post(f"{admin}/faults", json=faults, timeout=10)
                again = create_endpoints(app, min(n, SERVICE_LIMIT - 1), f"i{n}x")
                one = run_worker(emu.manifest_path, table_prefix, f"i{n}x", len(again), model_path,
                                 args.concurrency, switch)
                requests.delete(f"{admin}/faults", timeout=10)
                inline = float(one["elapsed"])
                per_endpoint = inline * args.concurrency / len(again)
                delete_endpoints(app, again)
            rows.append((n, got, verified, inline, inline is not None))
            delete_endpoints(app, endpoints)
    print(f"\nFan-out of one model to N endpoints at a {switch:g} s switch (the emulator's propagation); "
          f"{args.latency_ms:g} ms per Studio call; {args.instances} instances x {args.concurrency} threads (queued) "
          f"vs one invocation x {args.concurrency} threads (inline)")
    print("| N | queued (s) | inline (s) | inline/queued | peak RSS per instance (MB) | run | verified (serving / "
          "Deployed / events / leases held) |")
    print("|---|---|---|---|---|---|---|")
    for n, got, verified, inline, measured in rows:
        if inline is None and per_endpoint is not None:
            inline = per_endpoint * n / args.concurrency
        inline_s = "-" if inline is None else f"{inline:.1f}" + ("" if measured else " (computed)")
        ratio = "-" if inline is None else f"{inline / got['elapsed']:.1f}x"
        rss = " / ".join(f"{r:.0f}" for r in got["rss_peak_mb"])
        print(f"| {n} | {got['elapsed']:.1f} | {inline_s} | {ratio} | {rss} | {got['status']} | "
              f"{verified['serving the model']} / {verified['ledger Deployed']} / {verified['events']} / "
              f"{verified['leases held']} |")
    return 0
