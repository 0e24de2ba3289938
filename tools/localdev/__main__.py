"""Hands-on helpers for a stack started by `make run` (they read `.local/stack.json`):

  python -m tools.localdev drop FILE training-data/tenant-a/new.csv   upload a file into a container (with progress)
  python -m tools.localdev score tenant-a [--rows 5]                  score census rows through an endpoint, as a client
                                                                 of the scoring service would (its key from Studio;
                                                                 on Azure ML its scoringUri with an Entra token)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from tools.emulator import census_schema
from tools.emulator.census import generate_rows
from tools.localdev import studio, workspace
from tools.localdev.azurite import PROJECT_ROOT
from tools.localdev.ports import port_is_free


def _stack(path: Path) -> dict[str, Any]:
    """The running stack's description; one clear line (not a traceback, not a long hang) when there is none."""
    if not path.exists():
        raise SystemExit(f"no local stack ({path} does not exist): start it with `make run` first")
    stack = dict(json.loads(path.read_text()))
    ports = stack.get("ports", {})
    down = [name for name in ("blob", "emulator") if ports.get(name) and port_is_free("127.0.0.1", ports[name])]
    if down:
        raise SystemExit(f"the local stack is not running (nothing answers on its {' and '.join(down)} port): "
                         "start it with `make run`")
    return stack


def drop(stack: dict[str, Any], file: Path, destination: str) -> int:
    container, _, name = destination.partition("/")
    if not name:
        raise SystemExit("the destination is <container>/<path>, e.g. training-data/tenant-a/new.csv")
    size = file.stat().st_size
    client = BlobServiceClient.from_connection_string(stack["storage_connection_string"],
                                                      connection_verify=stack.get("ca_bundle") or True)

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
    sample = [dict(zip(census_schema.COLUMNS, row, strict=True)) for row in generate_rows(rows, seed=seed)]
    features = [{k: v for k, v in row.items() if k != census_schema.LABEL} for row in sample]
    http = requests.Session()
    if stack.get("ca_bundle"):  # identity mode or azureml: the emulator serves HTTPS with the stack's own CA
        http.verify, http.trust_env = stack["ca_bundle"], False
    if stack.get("target") == "azureml":
        return score_azureml(manifest, http, endpoint, sample, features)
    try:
        ep = studio.get_endpoint(manifest, endpoint, http)
        scores = studio.score(ep, features, http)
    except studio.StudioCallFailed as exc:
        raise SystemExit(str(exc)) from None
    print(f"endpoint {endpoint} serves {studio.serving(ep)}")
    for row, p in zip(sample, scores, strict=True):
        print(f"  age {row['age']:>3}  {row['education']:<13} {row['occupation']:<18} P(income >50K) = {p:.3f}")
    return 0


def score_azureml(manifest: dict[str, Any], http: requests.Session, endpoint: str, sample: list[dict[str, Any]],
                  features: list[dict[str, Any]]) -> int:
    ws = workspace.Workspace(manifest, http)
    try:
        scores, answered = ws.score(endpoint, features)
        traffic = ws.traffic(endpoint)
        deployments = ws.deployments(endpoint)
    except workspace.WorkspaceCallFailed as exc:
        raise SystemExit(str(exc)) from None
    split = ", ".join(f"{d} {s} %" for d, s in sorted(traffic.items(), key=lambda i: -i[1]))
    print(f"endpoint {endpoint} (traffic: {split}): deployment {answered} answered, serving "
          f"{deployments.get(answered, {}).get('model', '?')}")
    for row, p in zip(sample, scores, strict=True):
        print(f"  age {row['age']:>3}  {row['education']:<13} {row['occupation']:<18} P(income >50K) = {p:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.localdev", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=None,
                        help="the stack's stack.json (default: the newest of .local/stack.json, "
                             ".local/identity/stack.json, .local/azureml/stack.json and "
                             ".local/azureml/identity/stack.json, from `make run` [TARGET=azureml] "
                             "[RUN_ARGS=--identity])")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("drop", help="upload a file into a container")
    d.add_argument("file", type=Path)
    d.add_argument("destination", help="<container>/<path>")
    s = sub.add_parser("score", help="score census rows through an endpoint")
    s.add_argument("endpoint")
    s.add_argument("--rows", type=int, default=5)
    s.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.stack is None:
        local = PROJECT_ROOT / ".local"
        found = [p for p in (local / "stack.json", local / "identity" / "stack.json", local / "azureml" / "stack.json",
                             local / "azureml" / "identity" / "stack.json") if p.exists()]
        args.stack = max(found, key=lambda p: p.stat().st_mtime) if found else local / "stack.json"
    stack = _stack(args.stack)
    if args.command == "drop":
        return drop(stack, args.file, args.destination)
    return score(stack, args.endpoint, args.rows, args.seed)


if __name__ == "__main__":
    sys.exit(main())
