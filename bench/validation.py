"""Benchmark: validating large training CSVs from blob storage, beside a plain csv.reader pass over the local file.

Generates census CSVs of each --sizes-mb on disk and uploads them to Azurite, plus a hostile file of
--hostile-mb with no newline at all. Each pass runs in a child process of its own, so its memory is its own:
"plain" is a `csv.reader` loop over the local file (no checks, no download); "ours" is the app's validation of the
blob (download + every check: `Storage.chunks` into `shared.validation.validate_csv`). Peak RSS growth is measured
over the child's import baseline (after the app's modules and pyarrow are imported), sampled every 10 ms.

    python -m bench.validation [--sizes-mb 200,1024] [--hostile-mb 200]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PeakRss
from tools.emulator.census import write_csv
from tools.localdev.azurite import Azurite

ROWS_PER_MB = 9_600  # census rows are ~105 bytes


def plain_pass(path: str) -> dict[str, Any]:
    import csv

    with PeakRss(0.01) as peak:
        started = time.perf_counter()
        rows = 0
        with open(path, encoding="utf-8", newline="") as f:
            for _ in csv.reader(f):
                rows += 1
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows": rows, "growth_mb": peak.peak - peak.before, "outcome": f"{rows:,} lines"}


def our_pass(connection_string: str, blob: str) -> dict[str, Any]:
    import pyarrow.compute
    import pyarrow.csv  # noqa: F401

    from shared.adapters.storage import Storage
    from shared.records import BlobRef
    from shared.settings import load_settings
    from shared.validation import DataRejected, DataSpec, validate_csv

    settings = load_settings({"AzureWebJobsStorage": connection_string, "RETRAIN_MANAGEMENT_URL":
                              "http://127.0.0.1:1/workspaces/w/webservices/s", "RETRAIN_MANAGEMENT_KEY": "k" * 10,
                              "RETRAIN_RESOURCE_NAME": "r", "RETRAIN_BES_URL": "http://127.0.0.1:1/workspaces/w/services/s",
                              "RETRAIN_BES_KEY": "k" * 10})
    storage = Storage(settings)
    spec = DataSpec(settings.required_columns, settings.numeric_columns, settings.label_column, settings.min_rows,
                    settings.label_values, settings.max_line_bytes)
    with PeakRss(0.01) as peak:
        started = time.perf_counter()
        try:
            report = validate_csv(storage.chunks(BlobRef("training-data", blob)), spec)
            outcome = f"valid, {report.rows:,} rows"
        except DataRejected as exc:
            outcome = f"rejected: {exc.code} (line {exc.line})"
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "growth_mb": peak.peak - peak.before, "outcome": outcome}


def import_time() -> float:
    """Seconds that importing pyarrow's CSV reader and compute functions adds (a fresh interpreter, median of 3)."""
    code = "import time; t = time.perf_counter(); import pyarrow.csv, pyarrow.compute; print(time.perf_counter() - t)"
    samples = sorted(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                          check=True).stdout) for _ in range(3))
    return samples[1]


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.validation", "--child", *args], capture_output=True,
                         text=True, check=True)
    return dict(json.loads(out.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="200,1024")
    parser.add_argument("--size-mb", type=int, help="one size only (as before)")
    parser.add_argument("--hostile-mb", type=int, default=200)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        print(json.dumps(plain_pass(rest[0]) if kind == "plain" else our_pass(rest[0], rest[1])))
        return 0
    sizes = [args.size_mb] if args.size_mb else [int(s) for s in args.sizes_mb.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-validation-"))
    rows: list[tuple[str, float, dict[str, Any]]] = []
    with Azurite(work / "azurite", extra_args=["--inMemoryPersistence"]) as azurite:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        with contextlib.suppress(Exception):
            service.create_container("training-data")
        for size in sizes:
            path = work / f"census-{size}.csv"
            print(f"generating {size} MB of census data ...", file=sys.stderr, flush=True)
            with open(path, "w", encoding="utf-8", newline="") as f:
                write_csv(f, size * ROWS_PER_MB, seed=1, progress=True)
            mb = path.stat().st_size / 2**20
            print("uploading to Azurite ...", file=sys.stderr, flush=True)
            with open(path, "rb") as f:
                service.get_blob_client("training-data", f"bench/{size}.csv").upload_blob(f, overwrite=True,
                                                                                         max_concurrency=2)
            print(f"{size} MB: plain csv.reader, then ours ...", file=sys.stderr, flush=True)
            rows.append((f"plain csv.reader, local file, {mb:.0f} MB", mb, child("plain", str(path))))
            rows.append((f"ours, from blob storage, {mb:.0f} MB", mb,
                         child("ours", azurite.connection_string, f"bench/{size}.csv")))
            path.unlink()
        if args.hostile_mb:
            print(f"hostile: {args.hostile_mb} MB without a newline ...", file=sys.stderr, flush=True)
            chunk = b"x" * 2**20
            service.get_blob_client("training-data", "bench/hostile.csv").upload_blob(
                (chunk for _ in range(args.hostile_mb)), overwrite=True)
            rows.append((f"ours, hostile {args.hostile_mb} MB with no newline", float(args.hostile_mb),
                         child("ours", azurite.connection_string, "bench/hostile.csv")))
    print("\nTraining-data validation (one run; each pass in its own process)")
    print("| pass | seconds | MB/s | vs plain | peak RSS growth (MB) | outcome |")
    print("|---|---|---|---|---|---|")
    plain_speed: float | None = None
    for name, mb, r in rows:
        speed = mb / r["seconds"]
        if name.startswith("plain"):
            plain_speed = speed
        ratio = f"{speed / plain_speed:.2f}x" if plain_speed and not name.startswith("plain") else "1.00x"
        print(f"| {name} | {r['seconds']:.2f} | {speed:.1f} | {ratio} | {r['growth_mb']:.0f} | {r['outcome']} |")
    print(f"\nImport time added by pyarrow.csv + pyarrow.compute (fresh interpreter, median of 3): "
          f"{import_time():.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
