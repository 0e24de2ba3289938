"""The snapshot behind the status page: endpoints (what serves, since when, from which run, who forced it, their
newest deployments), the last runs, runs awaiting approval, the newest rejections, the gate's line and when the
snapshot was taken. Every list is bounded: the page's size does not grow with the history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.ports.blobs import BlobStore
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.settings import Settings
from shared.status_page import EndpointStatus, StatusSnapshot, render
from shared.usecases.views import history_page

MAX_ENDPOINTS, MAX_RUNS, MAX_REJECTED, MAX_HISTORY = 50, 30, 30, 30  # MAX_HISTORY: deployments charted per endpoint


@dataclass
class StatusPage:
    """GET /api/status: a page an operator reads at a glance."""

    settings: Settings
    storage: BlobStore
    ledger: Ledger
    services: Services

    def html(self) -> str:
        return render(self.snapshot())

    def snapshot(self) -> StatusSnapshot:
        endpoints: list[EndpointStatus] = []
        count = 0
        for target in self.settings.targets:
            serving = self.services.serving(target)
            default = serving.protected_endpoint()
            listed = [e for e in serving.endpoints() if e.name != default]
            count += len(listed)
            for ep in listed[:max(0, MAX_ENDPOINTS - len(endpoints))]:
                history = self.ledger.history(target.name, ep.name)
                cur = self.ledger.current(target.name, ep.name)
                serving_now = next((d for d in history if cur and d.id == cur.deployment_id), None)
                shown, _ = history_page(history, MAX_HISTORY, None)
                endpoints.append(EndpointStatus(
                    target.name, ep.name, ep.model_path, serving_now.created_at if serving_now else None,
                    cur.run_id if cur else None, shown, list(ep.details.get("deployments") or []),
                    history_total=len(history), forced_by=(serving_now.caller or "?") if serving_now and
                    serving_now.forced else None))
        first = self.settings.gate.rules[0]
        return StatusSnapshot(self.settings.gate.primary, endpoints, count, self.ledger.list_runs(limit=MAX_RUNS),
                              self.ledger.list_runs(("AwaitingApproval",), limit=MAX_RUNS), self._rejected(),
                              self.settings.gate.metrics, made_at=datetime.now(UTC),
                              gate_line=first.minimum if first.minimum is not None else first.maximum)

    def _rejected(self) -> list[dict[str, Any]]:
        """The newest rejections (one page of rejected/'s index, whatever its size)."""
        return [{"name": r.path.split("/", 1)[-1], "source": r.source, "code": r.code, "at": r.at}
                for r in self.storage.rejected(MAX_REJECTED)]
