"""Hands-on helpers for a stack started by `make run` (they read `.local/stack.json`):

  python -m localdev drop FILE training-data/tenant-a/new.csv   upload a file into a container (with progress)
  python -m localdev score tenant-a [--rows 5]                  score census rows through an endpoint, as a client
                                                                 of the scoring service would (its key from Studio)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from emulator import census_schema
from emulator.census import generate_rows
from localdev.azurite import PROJECT_ROOT


def _stack(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"{path} does not exist: start the stack with `make run` first")
    return dict(json.loads(path.read_text()))


def drop(stack: dict[str, Any], file: Path, destination: str) -> int:
    container, _, name = destination.partition("/")
    if not name:
        raise SystemExit("the destination is <container>/<path>, e.g. training-data/tenant-a/new.csv")
    size = file.stat().st_size
    client = BlobServiceClient.from_connection_string(stack["storage_connection_string"])

    def progress(current: int, total: int | None) -> None:
        total = total or size
        print(f"\rupload: {current / 1e6:,.1f} / {total / 1e6:,.1f} MB ({100 * current // max(total, 1)}%)",
              end="", file=sys.stderr, flush=True)

    with file.open("rb") as data:
        client.get_blob_client(container, name).upload_blob(data, overwrite=True, length=size,
                                                            progress_hook=progress, max_concurrency=2)
    print(f"\nuploaded {file} to {container}/{name}", file=sys.stderr)
    return 0


def score(stack: dict[str, Any], endpoint: str, rows: int, seed: int) -> int:
    manifest = json.loads(Path(stack["emulator_manifest"]).read_text())
    url = (f"{manifest['management_url']}/workspaces/{manifest['workspace_id']}/webservices/"
           f"{manifest['predictive_service']['id']}/endpoints/{endpoint}")
    resp = requests.get(url, headers={"Authorization": f"Bearer {manifest['workspace_token']}"}, timeout=30)
    if resp.status_code != 200:
        raise SystemExit(f"endpoint {endpoint}: HTTP {resp.status_code} {resp.text[:200]}")
    ep = resp.json()
    model = ep["Resources"][0]["Location"]["RelativeLocation"] if ep.get("Resources") else "?"
    sample = [dict(zip(census_schema.COLUMNS, row, strict=True)) for row in generate_rows(rows, seed=seed)]
    names = [c for c in census_schema.COLUMNS if c != census_schema.LABEL]
    body = {"Inputs": {"input1": {"ColumnNames": names, "Values": [[str(r[n]) for n in names] for r in sample]}},
            "GlobalParameters": {}}
    scored = requests.post(f"{ep['ApiLocation']}/execute", params={"api-version": "2.0", "details": "true"},
                           headers={"Authorization": f"Bearer {ep['PrimaryKey']}"}, json=body, timeout=30)
    if scored.status_code != 200:
        raise SystemExit(f"scoring: HTTP {scored.status_code} {scored.text[:300]}")
    value = scored.json()["Results"]["output1"]["value"]
    column = value["ColumnNames"].index("Scored Probabilities")
    print(f"endpoint {endpoint} serves {model}")
    for row, out in zip(sample, value["Values"], strict=True):
        print(f"  age {row['age']:>3}  {row['education']:<13} {row['occupation']:<18} "
              f"P(income >50K) = {float(out[column]):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=PROJECT_ROOT / ".local" / "stack.json")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("drop", help="upload a file into a container")
    d.add_argument("file", type=Path)
    d.add_argument("destination", help="<container>/<path>")
    s = sub.add_parser("score", help="score census rows through an endpoint")
    s.add_argument("endpoint")
    s.add_argument("--rows", type=int, default=5)
    s.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    stack = _stack(args.stack)
    if args.command == "drop":
        return drop(stack, args.file, args.destination)
    return score(stack, args.endpoint, args.rows, args.seed)


if __name__ == "__main__":
    sys.exit(main())
