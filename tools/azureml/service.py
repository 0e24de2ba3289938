"""The stand-in's context and how it is mounted into the emulator's aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from pathlib import Path
from typing import Any

from aiohttp import web

from tools.azureml import admin, deployments, endpoints, events, jobs, models, operations, scoring, workspace
from tools.azureml.config import API_VERSION, AzureMLConfig
from tools.azureml.faults import DeploymentFault
from tools.azureml.state import AmlStore
from tools.azureml.workspace import AZUREML
from tools.emulator.context import Emulator
from tools.emulator.eventgrid import SOURCE, TOPICS, StorageEventSource, Topics
from tools.emulator.identity import IDENTITY
from tools.emulator.learner import Model

log = logging.getLogger("azureml")
TICK_SECONDS = 0.05


class AzureML:
    def __init__(self, emu: Emulator, config: AzureMLConfig, data_dir: Path | None,
                 faults: list[DeploymentFault] | None = None) -> None:
        self.emu = emu
        self.config = config
        self.store = AmlStore(data_dir)
        self.faults: list[DeploymentFault] = list(faults or [])
        self.routing_seed = config.routing_seed
        self.rngs: dict[str, random.Random] = {}
        self.loaded: dict[str, Model] = {}  # model document (JSON) -> loaded model
        self.served: dict[str, dict[str, dict[str, int]]] = {}  # endpoint -> deployment -> {"live", "mirror"}
        self.topics: Topics | None = None
        self.source: StorageEventSource | None = None
        self.identity_ids: dict[str, str] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def token_key(self) -> bytes:
        """Signs the endpoints' aml_tokens (derived from the workspace's secret: tokens survive a restart)."""
        return hashlib.sha256(f"azureml-token/{self.emu.store.ws.token}".encode()).digest()

    @property
    def arm_url(self) -> str:
        return f"{self.emu.base_url}/azureml"

    def resource_id(self, *parts: str) -> str:
        return "/".join([self.config.workspace_id, *parts])

    def scoring_uri(self, endpoint: str) -> str:
        return f"{self.emu.base_url}/azureml/inference/{endpoint}/score"

    def swagger_uri(self, endpoint: str) -> str:
        return f"{self.emu.base_url}/azureml/inference/{endpoint}/swagger.json"

    def rng(self, endpoint: str) -> random.Random:
        found = self.rngs.get(endpoint)
        if found is None:
            found = self.rngs[endpoint] = random.Random(f"{self.routing_seed}/{endpoint}")
        return found

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await operations.tick(self)
                await jobs.tick(self)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the Azure ML stand-in's ticker failed; going on")

    async def start(self, app: web.Application) -> None:
        self.topics = app[TOPICS]
        self.source = app[SOURCE]
        self.topics.ensure(events.TOPIC, schema="EventGridSchema")
        ident = app[IDENTITY]
        self.identity_ids = {"principal_id": ident.principal_id, "tenant_id": ident.tenant_id}
        self.store.load()
        self.store.start_saver()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.stop_saver()

    def manifest(self) -> dict[str, Any]:
        return {"arm_url": self.arm_url, "workspace_id": self.config.workspace_id, "api_version": API_VERSION,
                "subscription_id": self.config.subscription_id, "resource_group": self.config.resource_group,
                "workspace_name": self.config.workspace_name, "location": self.config.location,
                "token_resource": "https://management.azure.com/",
                "datastore": {"name": "workspaceblobstore", "container": self.config.blobstore_container},
                "events_topic": events.TOPIC, "inference_url": f"{self.emu.base_url}/azureml/inference",
                "admin_url": f"{self.emu.base_url}/admin/azureml"}


def install(app: web.Application, aml: AzureML) -> None:
    """Mount the routes on the emulator's application (route names `azureml.*`, so the emulator's fault rules can
    target them); start and stop with it."""
    app[AZUREML] = aml
    for table in (workspace.routes, endpoints.routes, deployments.routes, models.routes, jobs.routes,
                  operations.routes, scoring.routes, admin.routes):
        app.router.add_routes(table)
