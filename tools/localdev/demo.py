"""`make demo`: the whole story on one machine, through the app's public surfaces only (its HTTP API, the storage
container, the emulator's Studio APIs and its Event Grid topic).

Brings the stack up (Azurite, the emulator, the function app under Core Tools or devhost), adds an endpoint through
the app, scores census rows through it, drops a drifted census CSV into `training-data/<endpoint>/`, follows the run
live until the endpoint serves the retrained model, then prints the scores before and after, the timings, the
ledger history and the events. Exits 0 on success, 1 with a message on any failure.

`--target azureml` tells the same story on the Azure ML stand-in (tools/localdev/demo_azureml.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from tools.emulator.census import csv_text
from tools.localdev import demo_azureml, studio, workspace
from tools.localdev.azurite import PROJECT_ROOT
from tools.localdev.demo_common import ENDPOINT, AppDemo, DemoFailed, census_sample, wall
from tools.localdev.stack import Stack


class Demo(AppDemo):
    def __init__(self, stack: Stack, rows: int, timeout: float, t0: float) -> None:
        super().__init__(stack, rows, timeout, t0, requests.Session())
        assert stack.azurite is not None
        self.blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)

    # ---- Studio side (what a user sees in the Studio portal) ----------------------------------------------------
    def score(self, rows: list[dict[str, Any]]) -> list[float]:
        try:
            return studio.score(studio.get_endpoint(self.manifest, ENDPOINT, self.http), rows, self.http)
        except studio.StudioCallFailed as exc:
            raise DemoFailed(str(exc)) from None

    # ---- the story ------------------------------------------------------------------------------------------
    def run(self) -> None:
        health = self.call("GET", "/health", 200)
        self.say(f"app healthy: {', '.join(k for k, v in health['checks'].items() if v['ok'])}")
        created = self.call("POST", "/endpoints", 201, json={
            "name": ENDPOINT, "description": "created by make demo"})
        self.say(f"endpoint '{ENDPOINT}' added through POST /api/endpoints; it serves "
                 f"{created['model']['relativeLocation']}")
        sample = census_sample()
        before = self.score(sample)
        self.say(f"scored {len(sample)} census rows through '{ENDPOINT}'")

        data_path = f"{ENDPOINT}/census-drifted.csv"
        csv = csv_text(self.rows, seed=11, drift=1.0).encode()
        self.blobs.get_blob_client("training-data", data_path).upload_blob(csv, overwrite=True)
        landed = time.time()
        self.say(f"dropped training-data/{data_path} ({self.rows:,} rows, {len(csv) / 1e6:.1f} MB, drifted)")
        run, model_seen, verified = self.follow(f"training-data/{data_path}", landed)

        after = self.score(sample)
        self.report(sample, before, after, run, landed, model_seen, verified)

    def follow(self, data_path: str, landed: float) -> tuple[dict[str, Any], float, float]:
        """Poll the runs API, the models container and the events until the endpoint is verified. Returns the run
        and the wall-clock times the model landed (the BES job ended, per the emulator) and the endpoint was
        verified (the EndpointUpdated event's time)."""
        deadline = time.monotonic() + self.timeout
        shown: set[str] = set()
        run: dict[str, Any] | None = None
        model_seen = 0.0

        def stage(key: str, text: str) -> None:
            if key not in shown:
                shown.add(key)
                self.say(text)

        while time.monotonic() < deadline:
            if run is None or run["status"] in ("Accepted", "Submitted", "Training"):
                runs = self.call("GET", "/runs?limit=20", 200)["runs"]
                run = next((r for r in runs if r.get("dataPath") == data_path), run)
            if run is not None:
                run = self.call("GET", f"/runs/{run['id']}", 200)
                if run.get("rows") or run["status"] != "Accepted":  # (validated: its rows are counted)
                    stage("accepted", f"accepted: run {run['id'][:12]} ({run.get('rows') or '?'} rows valid)")
                if run["status"] not in ("Accepted", "Rejected"):
                    stage("running", f"job running: BES job {run['jobId']}")
                if run["status"] in ("Rejected", "Failed", "Cancelled", "BelowGate", "RolledBack", "Superseded"):
                    raise DemoFailed(f"run {run['id']} ended {run['status']}: {run.get('error')}")
                if not model_seen and run.get("modelPath"):
                    container, _, name = run["modelPath"].partition("/")
                    if self.blobs.get_blob_client(container, name).exists():
                        model_seen = time.time()
                        stage("model", f"model landed: {run['modelPath']}")
                gate_metric = self.stack.settings.get("RETRAIN_GATE_METRIC", "AUC")
                metric = (run.get("metrics") or {}).get(gate_metric)
                if metric is not None:
                    minimum = self.stack.settings.get("RETRAIN_GATE_MINIMUM", "0.7")
                    stage("gate", f"gate: {gate_metric} {metric:.4f} against minimum {minimum}: passed")
            event = self.verified_event(run)
            if event is not None and run is not None:
                verified = wall(event["time"])
                jobs = self.http.get(f"{self.manifest['admin_url']}/jobs", timeout=30).json()
                ended = next((j.get("ended") for j in jobs if j["id"] == run.get("jobId")), None)
                model_seen = wall(ended) if ended else verified
                stage("model", f"model landed: {run.get('modelPath')}")
                stage("patched", f"patched: PATCH {ENDPOINT} -> {event['data'].get('model')}")
                stage("verified", f"verified: {ENDPOINT} shows the new model and a smoke request scored")
                return run, model_seen, verified
            time.sleep(0.1)
        raise self.not_verified(run)

    def report(self, sample: list[dict[str, Any]], before: list[float], after: list[float], run: dict[str, Any],
               landed: float, model_seen: float, verified: float) -> None:
        print("\nScores through the endpoint (probability of income >50K):")
        print(f"  {'row':>3}  {'age':>3}  {'education':<13} {'occupation':<18} {'before':>7}  {'after':>7}")
        for i, (row, b, a) in enumerate(zip(sample, before, after, strict=True), 1):
            print(f"  {i:>3}  {row['age']:>3}  {row['education']:<13} {row['occupation']:<18} {b:7.3f}  {a:7.3f}")
        changed = sum(1 for b, a in zip(before, after, strict=True) if abs(b - a) > 1e-6)
        if not changed:
            raise DemoFailed("the scores did not change: the endpoint does not serve the retrained model")
        print(f"\nTimings: data landed -> endpoint verified {verified - landed:.1f} s; "
              f"model landed -> endpoint verified {verified - model_seen:.1f} s")
        self.print_history(run, "Events received on the Event Grid topic:")
        print(f"\nDemo finished in {time.monotonic() - self.t0:.1f} s: '{ENDPOINT}' serves the model retrained on "
              "the new data.")


OPENING = """\
The problem: a model scoring census records (does this person earn >50K?) was trained on last year's population;
the population drifts, and the live endpoint's scores drift away from the truth with it.
What you will see: drifted data lands in blob storage -> the app validates it and retrains through BES -> the new
model passes the gate -> the endpoint is swapped and verified, with no human in the loop -> scores before and after.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.localdev.demo",
                                     description="Run the retraining story locally.")
    parser.add_argument("--target", choices=["classic", "azureml"], default="classic",
                        help="the kind of target the app retrains: Studio (classic) or Azure Machine Learning (v2)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows in the drifted training file")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for the endpoint to update (default: 90; azureml: 120, 1800 with "
                             "realistic timings)")
    parser.add_argument("--azureml-timing", choices=["fast", "realistic"], default="fast",
                        help="the Azure ML stand-in's operation times (see tools/azureml/README.md)")
    parser.add_argument("--azureml-time", action="append", default=[], metavar="NAME=SECONDS",
                        help="one Azure ML stand-in time, e.g. deployment_create=30 (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="default: .local/demo (.local/demo-azureml with --target azureml)")
    args = parser.parse_args(argv)
    azureml = args.target == "azureml"
    workdir = args.workdir or PROJECT_ROOT / ".local" / ("demo-azureml" if azureml else "demo")
    slowed = args.azureml_timing == "realistic" or bool(args.azureml_time)
    timeout = args.timeout or (90 if not azureml else 1800 if slowed else 120)
    started = time.monotonic()
    shutil.rmtree(workdir, ignore_errors=True)
    print(OPENING if not azureml else demo_azureml.OPENING, flush=True)

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    emulator_args = ["--azureml-timing", args.azureml_timing]
    for item in args.azureml_time:
        emulator_args += ["--azureml-time", item]
    stack = Stack(workdir, progress=progress, target=args.target, emulator_args=emulator_args if azureml else [])
    try:
        stack.start()
        progress(f"stack up: functions {stack.functions_url} ({stack.host_kind})")
        if azureml:
            demo_azureml.AzureMLDemo(stack, args.rows, timeout, started).run()
            return 0
        Demo(stack, args.rows, timeout, started).run()
        return 0
    except (DemoFailed, workspace.WorkspaceCallFailed, RuntimeError, TimeoutError,
            requests.RequestException) as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr)
        tail = stack.host_log_tail(15)
        if tail:
            print(f"\nlast lines of {workdir / 'functions.log'}:\n{tail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
