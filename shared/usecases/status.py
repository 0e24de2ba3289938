"""The snapshot behind the status page: endpoints (what serves, since when, from which run, their deployment
history), the last runs, runs awaiting approval, and the files in rejected/ with their reason codes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.adapters.ledger import Ledger
from shared.adapters.storage import Storage
from shared.adapters.studio import StudioClients
from shared.records import BlobRef
from shared.settings import Settings
from shared.status_page import EndpointStatus, StatusSnapshot, render

MAX_ENDPOINTS, MAX_RUNS, MAX_REJECTED = 50, 30, 30


@dataclass
class StatusPage:
    """GET /api/status: a page an operator reads at a glance."""

    settings: Settings
    storage: Storage
    ledger: Ledger
    studio: StudioClients

    def html(self) -> str:
        return render(self.snapshot())

    def snapshot(self) -> StatusSnapshot:
        endpoints: list[EndpointStatus] = []
        count = 0
        for target in self.settings.targets:
            default = self.studio.default_endpoint(target)
            listed = [e for e in self.studio.management(target).list_endpoints() if e.Name != default]
            count += len(listed)
            for ep in listed[:max(0, MAX_ENDPOINTS - len(endpoints))]:
                history = self.ledger.history(target.name, ep.Name)
                cur = self.ledger.current(target.name, ep.Name)
                since = next((d.created_at for d in history if cur and d.id == cur.deployment_id), None)
                endpoints.append(EndpointStatus(target.name, ep.Name, ep.model_path(target.resource_name), since,
                                                cur.run_id if cur else None, history))
        return StatusSnapshot(self.settings.gate_metric, endpoints, count, self.ledger.list_runs(limit=MAX_RUNS),
                              self.ledger.list_runs(("AwaitingApproval",), limit=MAX_RUNS), self._rejected())

    def _rejected(self) -> list[dict[str, Any]]:
        container = self.storage.blob.get_container_client(self.settings.rejected_container)
        files = [b for b in container.list_blobs() if not b.name.endswith(".reason.json")]
        files.sort(key=lambda b: b.last_modified, reverse=True)
        out = []
        for blob in files[:MAX_REJECTED]:
            try:
                reason = json.loads(self.storage.read_bytes(BlobRef(container.container_name,
                                                                     blob.name + ".reason.json"), limit=65536))
            except Exception:  # noqa: BLE001 - a missing or odd reason file does not stop the page
                reason = {}
            out.append({"name": blob.name, "code": reason.get("code"), "at": reason.get("rejectedAt")})
        return out
