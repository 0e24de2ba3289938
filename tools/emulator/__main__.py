"""`python -m tools.emulator serve ...`: the local stand-in for Studio (classic), Event Grid and storage events.

`python -m tools.emulator census ...` is the same as `python -m tools.emulator.census ...` (synthetic census data).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from tools.azureml.config import AzureMLConfig, limits_from_flags, timing_from_flags
from tools.azureml.faults import parse_flag as parse_deployment_fault
from tools.emulator import census
from tools.emulator.eventgrid import subscription_from_flag
from tools.emulator.faults import parse_fault_flag
from tools.emulator.server import Options, serve


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="start the emulator", description="Start the Studio (classic) emulator: "
                       "management API, BES, RRS, an Event Grid topic and a storage-events source, on one port.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    p.add_argument("--storage", default=os.environ.get("EMULATOR_STORAGE"),
                   help="storage connection string of the workspace storage (default: $EMULATOR_STORAGE)")
    p.add_argument("--manifest", type=Path, help="write the manifest JSON (URLs, ids, keys) here once listening")
    p.add_argument("--data", type=Path, help="keep state in this folder so it survives a restart")
    p.add_argument("--propagation-seconds", type=float, default=0.0,
                   help="delay before a PATCHed model serves (the real service took ~30 s; default 0)")
    p.add_argument("--job-seconds", type=float, default=0.0, help="minimum duration of a BES job (default 0)")
    p.add_argument("--result-sas-seconds", type=float, default=3600.0,
                   help="lifetime of the SAS tokens in job results (default 3600)")
    p.add_argument("--max-concurrent-jobs", type=int, default=2, help="BES jobs running at once (default 2)")
    p.add_argument("--tier", choices=["standard", "free"], default="standard",
                   help="workspace tier on first start: free allows 3 endpoints and ThrottleLevel Low only")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="inject a fault, e.g. route=bes.submit,status=503,retry_after=1,count=3 (repeatable)")
    p.add_argument("--subscribe", action="append", default=[], metavar="[CONTAINER=]URL",
                   help="deliver BlobCreated events (of one container) to this webhook (repeatable)")
    p.add_argument("--events-poll-seconds", type=float, default=0.5, help="storage polling interval (default 0.5)")
    p.add_argument("--sas-cache-seconds", type=float, default=5.0,
                   help="share downloads of the same SAS URL for this long (0 = download on every PATCH)")
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this PEM certificate (needs --tls-key)")
    p.add_argument("--tls-key", type=Path, help="the private key of --tls-cert (PEM)")
    p.add_argument("--topic-auth", choices=["key", "entra"], default="key",
                   help="how publishers authenticate to the default topic: its key, or (entra) only an Entra ID "
                        "token from the emulator's managed identity endpoint (local auth disabled)")
    p.add_argument("--azureml-timing", choices=["fast", "realistic"], default="fast",
                   help="Azure ML stand-in: how long operations take - seconds (fast, default) or the minutes the "
                        "real service takes (realistic)")
    p.add_argument("--azureml-time", action="append", default=[], metavar="NAME=SECONDS",
                   help="Azure ML stand-in: override one timing, e.g. deployment_create=30 (repeatable)")
    p.add_argument("--azureml-instance-quota", type=int, default=36,
                   help="Azure ML stand-in: instance quota of the workspace (each deployment needs its instance "
                        "count plus 20%%; default 36)")
    p.add_argument("--azureml-limit", action="append", default=[], metavar="NAME=N",
                   help="Azure ML stand-in: override a limit, e.g. deployments_per_endpoint=3 (repeatable)")
    p.add_argument("--azureml-routing-seed", type=int, default=0, help="Azure ML stand-in: traffic routing seed")
    p.add_argument("--azureml-deployment-fault", action="append", default=[], metavar="SPEC",
                   help="Azure ML stand-in: deployment=green*,stuck=600 or deployment=x,fail_after=120 (repeatable)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--log-level", default="INFO")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["census"]:
        return census.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tools.emulator", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    sub.add_parser("census", help="write synthetic census data (see python -m tools.emulator.census --help)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if not args.storage:
        parser.error("--storage (or $EMULATOR_STORAGE) is required: the workspace storage connection string")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        opts = Options(storage=args.storage, host=args.host, port=args.port, manifest=args.manifest, data=args.data,
                       propagation_seconds=args.propagation_seconds, job_seconds=args.job_seconds,
                       result_sas_seconds=args.result_sas_seconds, max_concurrent_jobs=args.max_concurrent_jobs,
                       tier=args.tier, faults=[parse_fault_flag(f) for f in args.fault],
                       subscriptions=[subscription_from_flag(s) for s in args.subscribe],
                       events_poll_seconds=args.events_poll_seconds, access_log=args.access_log,
                       sas_cache_seconds=args.sas_cache_seconds, tls_cert=args.tls_cert, tls_key=args.tls_key,
                       topic_auth=args.topic_auth,
                       azureml=AzureMLConfig(timing=timing_from_flags(args.azureml_timing, args.azureml_time),
                                             limits=limits_from_flags(args.azureml_instance_quota,
                                                                      args.azureml_limit),
                                             routing_seed=args.azureml_routing_seed),
                       azureml_faults=[parse_deployment_fault(f) for f in args.azureml_deployment_fault])
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(serve(opts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
