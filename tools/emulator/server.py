"""Assembles the emulator: provisioning on first start, the aiohttp application, the manifest, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tools.azureml.config import AzureMLConfig
from tools.azureml.faults import DeploymentFault
from tools.azureml.service import AzureML
from tools.azureml.service import install as install_azureml
from tools.emulator import bes, eventgrid, faults, identity, management, rrs
from tools.emulator.blobs import SasFetcher
from tools.emulator.census import csv_text
from tools.emulator.census_schema import FEATURES, LABEL
from tools.emulator.context import EMULATOR, Config, Emulator
from tools.emulator.errors import error_middleware
from tools.emulator.learner import train_and_evaluate
from tools.emulator.state import EndpointState, Location, Resource, ServiceState, Store
from tools.emulator.tables import read_table

log = logging.getLogger("emulator")

TRAINING_SERVICE = "Census Model [training exp.]"
PREDICTIVE_SERVICE = "Census Model [predictive exp.]"
RESOURCE_NAME = "Census Model [trained model]"
INITIAL_MODEL = "experimentoutput/initial/census-model.ilearner"
DEFAULT_TOPIC = "retrain"
INITIAL_SEED = 20_240_831


@dataclass
class Options:
    storage: str
    host: str = "127.0.0.1"
    port: int = 0
    manifest: Path | None = None
    data: Path | None = None
    propagation_seconds: float = 0.0
    job_seconds: float = 0.0
    result_sas_seconds: float = 3600.0
    max_concurrent_jobs: int = 2
    tier: str = "standard"
    faults: list[faults.FaultRule] = field(default_factory=list)
    subscriptions: list[eventgrid.Subscription] = field(default_factory=list)
    events_poll_seconds: float = 0.5
    access_log: bool = False
    sas_cache_seconds: float = 5.0
    tls_cert: Path | None = None  # serve HTTPS with this certificate (PEM) and key
    tls_key: Path | None = None
    topic_auth: str = "key"  # "entra": the default topic takes only Entra ID tokens (local auth disabled)
    azureml: AzureMLConfig | None = None  # the Azure ML (v2) stand-in's settings (tools/azureml); None: defaults
    azureml_faults: list[DeploymentFault] = field(default_factory=list)


def _initial_model() -> bytes:
    _, columns = read_table(csv_text(4000, INITIAL_SEED).encode(), "initial.csv")
    model, _ = train_and_evaluate({c: columns[c] for c in FEATURES}, columns[LABEL], seed=INITIAL_SEED)
    return json.dumps(dict(model.document, trainedOn="initial census sample")).encode()


async def provision(emu: Emulator, tier: str) -> None:
    """First start: a workspace with a training service and a predictive service holding an initial model."""
    ws = emu.store.ws
    ws.tier = "free" if tier == "free" else "standard"
    training = ServiceState(name=TRAINING_SERVICE, kind="training",
                            description="Trains the census income model (BES: input1 -> output1 .ilearner, "
                                        "output2 evaluation).")
    training.endpoints["default"] = EndpointState(name="default", description="Default endpoint",
                                                  version=training.version)
    document = await asyncio.get_running_loop().run_in_executor(None, _initial_model)
    sha = emu.store.add_model(document)
    predictive = ServiceState(name=PREDICTIVE_SERVICE, kind="predictive", resource_name=RESOURCE_NAME,
                              description="Scores census rows: income <=50K / >50K.")
    location = Location(BaseLocation=emu.workspace_storage.base_location, RelativeLocation=INITIAL_MODEL)
    predictive.endpoints["default"] = EndpointState(
        name="default", description="Default endpoint", version=predictive.version,
        resources=[Resource(Name=RESOURCE_NAME, Location=location)], active_model=sha)
    ws.services = {training.id: training, predictive.id: predictive}
    emu.store.rebuild_index()
    emu.store.mark_dirty()


async def ensure_initial_model_blob(emu: Emulator) -> None:
    """The initial model must be readable in workspace storage (re-uploaded if storage was reset)."""
    conn = emu.config.storage_connection_string
    if await emu.blobs.exists(conn, INITIAL_MODEL):
        return
    predictive = next(s for s in emu.store.ws.services.values() if s.kind == "predictive")
    sha = predictive.endpoints[predictive.default_endpoint].active_model
    if sha is None or sha not in emu.store.model_docs:
        return
    await emu.blobs.write(conn, INITIAL_MODEL, emu.store.model_docs[sha])


def manifest(emu: Emulator) -> dict[str, Any]:
    ws = emu.store.ws
    training = next(s for s in ws.services.values() if s.kind == "training")
    predictive = next(s for s in ws.services.values() if s.kind == "predictive")
    training_ep = training.endpoints[training.default_endpoint]
    topic = ws.topics[DEFAULT_TOPIC]
    return {
        "management_url": emu.base_url,
        "workspace_id": ws.id,
        "workspace_token": ws.token,
        "training_service": {"id": training.id, "name": training.name,
                             "api_location": emu.api_location(training_ep), "api_key": training_ep.primary_key},
        "predictive_service": {"id": predictive.id, "name": predictive.name,
                               "default_endpoint": predictive.default_endpoint,
                               "resource_name": predictive.resource_name},
        "eventgrid": {"topic_endpoint": f"{emu.base_url}/eventgrid/topics/{DEFAULT_TOPIC}/api/events",
                      "topic_key": topic["key"], "auth": topic.get("auth", "key")},
        "identity": identity.Identity(ws.token).manifest(emu.base_url),
        "storage": {"connection_string": emu.config.storage_connection_string},
        "admin_url": f"{emu.base_url}/admin",
        "pid": os.getpid(),
    }


def manifest_with_azureml(emu: Emulator, aml: AzureML) -> dict[str, Any]:
    return {**manifest(emu), "azureml": aml.manifest()}


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.chmod(tmp, 0o600)  # it holds keys
    os.replace(tmp, path)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(emu: Emulator, fault_rules: list[faults.FaultRule],
              source: eventgrid.StorageEventSource, aml: AzureML | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware, rrs.throttle_middleware(), faults.fault_middleware],
                          client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = emu
    app[faults.FAULTS] = faults.Faults(fault_rules)
    app[bes.RUNNER] = bes.JobRunner(emu)
    app[eventgrid.TOPICS] = eventgrid.Topics(emu.store)
    app[eventgrid.SOURCE] = source
    app[identity.IDENTITY] = identity.Identity(emu.store.ws.token)
    app.router.add_get("/admin/health", health, name="admin.health")
    for table in (management.routes, bes.routes, rrs.routes, eventgrid.routes, faults.admin_routes,
                  identity.routes):
        app.router.add_routes(table)
    if aml is not None:  # same process, own prefix (/azureml): storage, topics, faults, identity are shared
        install_azureml(app, aml)
    return app


async def serve(opts: Options, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    config = Config(storage_connection_string=opts.storage, propagation_seconds=opts.propagation_seconds,
                    job_seconds=opts.job_seconds, result_sas_seconds=opts.result_sas_seconds,
                    max_concurrent_jobs=opts.max_concurrent_jobs)
    store = Store(opts.data)
    emu = Emulator(config=config, store=store, fetcher=SasFetcher(ttl=opts.sas_cache_seconds))
    first_start = not store.load()
    started = time.monotonic()
    if first_start:
        await provision(emu, opts.tier)
    await ensure_initial_model_blob(emu)
    source = eventgrid.StorageEventSource(store, opts.storage, poll_seconds=opts.events_poll_seconds)
    for sub in opts.subscriptions:  # one per name: a flag for a name kept from an earlier start replaces it
        source.subscriptions = [s for s in source.subscriptions  # (and an unnamed one from before names)
                                if s.name or s.subject_begins_with != sub.subject_begins_with]
        source.add(sub)
    aml_config = opts.azureml or AzureMLConfig()
    aml = AzureML(emu, dataclasses.replace(aml_config, workspace_seed=store.ws.id), opts.data, opts.azureml_faults)
    app = build_app(emu, opts.faults, source, aml)
    app[eventgrid.TOPICS].ensure(DEFAULT_TOPIC, auth=opts.topic_auth)
    runner = web.AppRunner(app, access_log=log if opts.access_log else None, handle_signals=False)
    await runner.setup()
    tls = None
    if opts.tls_cert is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(opts.tls_cert, opts.tls_key)
    site = web.TCPSite(runner, opts.host, opts.port, backlog=1024, reuse_address=True, ssl_context=tls)
    await site.start()
    sockets = getattr(site._server, "sockets", None)  # aiohttp exposes the bound port only here
    assert sockets
    port = sockets[0].getsockname()[1]
    host = "127.0.0.1" if opts.host in ("0.0.0.0", "") else opts.host
    emu.base_url = f"{'https' if tls else 'http'}://{host}:{port}"
    store.start_saver()
    await source.start()
    source._persist()
    app[bes.RUNNER].resume()
    await aml.start(app)
    if opts.manifest:
        write_manifest(opts.manifest, manifest_with_azureml(emu, aml))
    log.info("emulator listening on %s (%s, ready in %.1fs)", emu.base_url,
             "provisioned" if first_start else "state loaded", time.monotonic() - started)
    if ready is not None:
        ready.set()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("emulator stopping")
        await app[bes.RUNNER].close()
        await aml.close()
        await source.close()
        await runner.cleanup()
        await emu.fetcher.close()
        await emu.blobs.close()
        await store.stop_saver()
