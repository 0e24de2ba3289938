"""`python -m tools.devhost [--port 7071]`: run `function_app.app` like `func start` does.

Reads `local.settings.json` (its Values become environment variables unless already set, as with Core Tools) and
`host.json`, indexes the app (refusing what the host would), prints the functions and their URLs, and serves
until Ctrl-C or SIGTERM. `--instances N` runs N-1 more processes that take queue messages beside this one (as
instances the platform scaled out to do), each started with `--queues-only`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.devhost.host import DevHost, HostOptions
from tools.devhost.indexing import FunctionSpec, IndexingError, index


def load_local_settings(path: Path) -> dict[str, str]:
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{path} is not valid JSON: {exc}") from None
    if data.get("IsEncrypted"):
        raise SystemExit(f"{path}: encrypted settings are not supported here; set IsEncrypted to false")
    values = data.get("Values") or {}
    bad = [k for k, v in values.items() if not isinstance(v, str)]
    if bad:
        raise SystemExit(f"{path}: every value must be a string (not {', '.join(bad)})")
    return dict(values)


def apply_host_overrides(host_json: dict[str, Any], environ: Mapping[str, str]) -> None:
    """App settings `AzureFunctionsJobHost__a__b` override host.json's `a.b`, as on the real host."""
    for key, value in environ.items():
        if not key.startswith("AzureFunctionsJobHost__"):
            continue
        node = host_json
        *parents, leaf = key.split("__")[1:]
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value


def spec_summary(spec: FunctionSpec) -> dict[str, object]:
    return {"name": spec.name, "trigger": spec.trigger_type, "route": spec.route, "methods": spec.methods,
            "authLevel": spec.auth_level, "container": spec.blob_container, "pattern": spec.blob_pattern,
            "source": spec.blob_source, "schedule": spec.schedule}


def describe(host: DevHost) -> str:
    lines = ["", "Functions:", ""]
    for spec in host.specs.values():
        if spec.trigger_type == "httpTrigger":
            prefix = f"/{host.opts.route_prefix}" if host.opts.route_prefix else ""
            lines.append(f"        {spec.name}: [{','.join(spec.methods)}] {host.base_url}{prefix}/{spec.route}")
        elif spec.trigger_type == "blobTrigger":
            hook = f"{host.base_url}/runtime/webhooks/blobs?functionName=Host.Functions.{spec.name}"
            lines.append(f"        {spec.name}: blobTrigger {spec.blob_container}/{spec.blob_pattern} "
                         f"({spec.blob_source}) {hook if spec.blob_source == 'EventGrid' else ''}")
        elif spec.trigger_type == "queueTrigger":
            lines.append(f"        {spec.name}: queueTrigger {spec.queue_name}")
        else:
            lines.append(f"        {spec.name}: {spec.trigger_type} '{spec.schedule or ''}'")
    return "\n".join(lines) + "\n"


async def serve(host: DevHost, queues_only: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if queues_only:  # an extra instance: queue messages only (HTTP and blob events go to the first instance)
        host.start_queues()
        logging.getLogger("devhost").info("Instance started: queue triggers only (%d)", len(host.listeners))
        await stop.wait()
        for task in host.tasks:
            task.cancel()
        await asyncio.gather(*host.tasks, return_exceptions=True)
        return
    await host.start()
    print(describe(host), flush=True)
    logging.getLogger("devhost").info("Host started on %s (devhost; Core Tools not used)", host.base_url)
    await stop.wait()
    logging.getLogger("devhost").info("stopping")
    await host.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--script-root", default=".", help="the function app folder (function_app.py, host.json)")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", default="local.settings.json")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--list", action="store_true", help="print the indexed functions as JSON and exit")
    parser.add_argument("--instances", type=int, default=1, help="run as N instances: N-1 more processes take "
                        "queue messages beside this one")
    parser.add_argument("--queues-only", action="store_true", help="an extra instance: queue triggers only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    root = Path(args.script_root).resolve()
    for key, value in load_local_settings(root / args.settings).items():
        os.environ.setdefault(key, value)
    host_json = json.loads((root / "host.json").read_text()) if (root / "host.json").exists() else {}
    apply_host_overrides(host_json, os.environ)
    sys.path.insert(0, str(root))
    module_name, _, attr = args.app.partition(":")
    try:
        app = getattr(importlib.import_module(module_name), attr or "app")
        specs = index(app)
    except IndexingError as exc:
        print(f"error: the app did not index (0 functions loaded): {exc}", file=sys.stderr)
        return 2
    if args.list:
        print(json.dumps([spec_summary(s) for s in specs], indent=2))
        return 0
    host = DevHost(specs, HostOptions(root, host_json, dict(os.environ), args.host, args.port))
    extra = [subprocess.Popen([sys.executable, "-m", "tools.devhost", *(argv if argv is not None else sys.argv[1:]),
                               "--queues-only", "--instances", "1"]) for _ in range(max(0, args.instances - 1))]
    try:
        asyncio.run(serve(host, args.queues_only))
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in extra:
            proc.terminate()
        for proc in extra:
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
