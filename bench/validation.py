"""Benchmark: validating a large training CSV in bounded memory, beside a plain csv.reader pass.

Generates a census CSV of --size-mb (default 1024) on disk, uploads it to Azurite, then in separate child processes
(so peak RSS is each one's own): (1) a plain `csv.reader` pass over the local file, (2) our streamed validation of
the blob from storage (`shared.validation` over `Storage.chunks`). Prints MB/s and peak RSS for each.

    python -m bench.validation [--size-mb 1024]
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

from tools.emulator.census import write_csv
from tools.localdev.azurite import Azurite

ROWS_PER_MB = 9_600  # census rows are ~105 bytes


def plain_pass(path: str) -> dict[str, float]:
    import csv
    import resource

    started = time.perf_counter()
    rows = 0
    with open(path, encoding="utf-8", newline="") as f:
        for _ in csv.reader(f):
            rows += 1
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows": rows, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def our_pass(connection_string: str) -> dict[str, float]:
    import resource

    from shared.storage import BlobRef, Storage

    from shared.settings import load_settings
    from shared.validation import DataSpec, validate_csv

    settings = load_settings({"AzureWebJobsStorage": connection_string, "RETRAIN_MANAGEMENT_URL":
                              "http://127.0.0.1:1/workspaces/w/webservices/s", "RETRAIN_MANAGEMENT_KEY": "k" * 10,
                              "RETRAIN_RESOURCE_NAME": "r", "RETRAIN_BES_URL": "http://127.0.0.1:1/workspaces/w/services/s",
                              "RETRAIN_BES_KEY": "k" * 10})
    storage = Storage(settings)
    spec = DataSpec(settings.required_columns, settings.numeric_columns, settings.label_column, settings.min_rows)
    started = time.perf_counter()
    report = validate_csv(storage.chunks(BlobRef("training-data", "bench/big.csv")), spec)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows": report.rows,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--child", choices=["plain", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "plain":
        print(json.dumps(plain_pass(args.arg)))
        return 0
    if args.child == "ours":
        print(json.dumps(our_pass(args.arg)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-validation-"))
    path = work / "big.csv"
    print(f"generating {args.size_mb} MB of census data ...", file=sys.stderr, flush=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        write_csv(f, args.size_mb * ROWS_PER_MB, seed=1, progress=True)
    size_mb = path.stat().st_size / 1024 / 1024
    with Azurite(work / "azurite") as azurite:
        from azure.storage.blob import BlobServiceClient

        print("uploading to Azurite ...", file=sys.stderr, flush=True)
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        with contextlib.suppress(Exception):
            service.create_container("training-data")
        with open(path, "rb") as f:
            service.get_blob_client("training-data", "bench/big.csv").upload_blob(f, overwrite=True,
                                                                                  max_concurrency=2)
        results = {}
        for name, arg in (("plain csv.reader over the local file", str(path)),
                          ("ours: streamed validation from blob storage", azurite.connection_string)):
            print(f"{name} ...", file=sys.stderr, flush=True)
            child = "plain" if name.startswith("plain") else "ours"
            out = subprocess.run([sys.executable, "-m", "bench.validation", "--child", child, "--arg", arg],
                                 capture_output=True, text=True, check=True)
            results[name] = json.loads(out.stdout)
    print(f"\nValidating a {size_mb:.0f} MB census CSV ({results[next(iter(results))]['rows']:,.0f} lines)")
    print("| pass                                         |  seconds |  MB/s | peak RSS (MB) |")
    print("|----------------------------------------------|----------|-------|---------------|")
    for name, r in results.items():
        print(f"| {name:<44} | {r['seconds']:8.1f} | {size_mb / r['seconds']:5.1f} | {r['rss_mb']:13.0f} |")
    path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
