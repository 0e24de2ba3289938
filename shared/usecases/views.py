"""What the operator reads: endpoints (the service's view, without keys, beside the ledger's pointer and history),
runs, and the app's health. Shapes are the HTTP API's (camelCase)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.decisions import find_target
from shared.errors import NotFound, Refused
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.ports.serving import EndpointInfo
from shared.records import RUN_STATUSES, Deployment, Run
from shared.settings import Settings

RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
RUN_HIDDEN = {"claimed_by", "claimed_until", "smoke_row"}
HISTORY_LIMIT = 20  # an endpoint's history shown by default: the newest attempts, with a link to older ones


def history_page(history: list[Deployment], limit: int, before: str | None) -> tuple[list[Deployment], str | None]:
    """The `limit` newest attempts created before `before` (all when None) from a history (newest first), and the
    cursor for the next page (the last one's time), or None when there is nothing older."""
    older = [d for d in history if before is None or d.created_at < before]
    page = older[:limit]
    return page, page[-1].created_at if len(older) > limit else None


def run_view(run: Run) -> dict[str, Any]:
    """A run as the API shows it: camelCase, no internal claim bookkeeping."""
    return run.model_dump(by_alias=True, exclude=RUN_HIDDEN)


@dataclass
class Views:
    """Read-only answers for the HTTP API."""

    settings: Settings
    ledger: Ledger
    services: Services

    def endpoint(self, target_name: str | None, name: str, ep: EndpointInfo | None = None,
                 history_limit: int = HISTORY_LIMIT, before: str | None = None) -> dict[str, Any]:
        """An endpoint: the service's view (no keys), what the ledger says it serves, and one page of its history
        (the newest `history_limit` attempts before `before`; `historyNext` is the link to older ones)."""
        target = find_target(self.settings, target_name)
        serving = self.services.serving(target)
        ep = ep or serving.endpoint(name)
        if ep is None:
            raise NotFound(f"endpoint '{name}' does not exist on target '{target.name}'")
        cur = self.ledger.current(target.name, name)
        history = self.ledger.history(target.name, name)
        page, cursor = history_page(history, history_limit, before)
        query = {"target": target_name} if target_name else {}
        return {
            "name": ep.name, "target": target.name, "kind": target.kind, **ep.details,
            "isDefault": ep.name == serving.protected_endpoint(),
            "managed": bool(cur and cur.deployment_id),  # False: not adopted yet (the app never changed it)
            "model": {"baseLocation": ep.model_base, "relativeLocation": ep.model_path},
            "current": cur.model_dump(by_alias=True, exclude={"lease_owner", "lease_until"}) if cur else None,
            "history": [d.model_dump(by_alias=True) for d in page],
            "historyTotal": len(history),
            "historyNext": f"/api/endpoints/{name}?" + urlencode({**query, "historyLimit": history_limit,
                                                                   "before": cursor}) if cursor else None,
        }

    def endpoints(self, target_name: str | None = None) -> list[dict[str, Any]]:
        targets = [find_target(self.settings, target_name)] if target_name else self.settings.targets
        out = []
        for target in targets:
            serving = self.services.serving(target)
            default = serving.protected_endpoint()
            for ep in serving.endpoints():
                cur = self.ledger.current(target.name, ep.name)
                out.append({"name": ep.name, "target": target.name, "isDefault": ep.name == default,
                            "managed": bool(cur and cur.deployment_id),
                            "model": ep.model_path,
                            "deploymentId": cur.deployment_id if cur else None,
                            "runId": cur.run_id if cur else None})
        return out

    def run(self, run_id: str) -> Run:
        run = self.ledger.get_run(run_id) if RUN_ID.fullmatch(run_id) else None
        if run is None:
            raise NotFound(f"no run '{run_id}'")
        return run

    def runs(self, statuses: tuple[str, ...] | None = None, limit: int = 50) -> list[Run]:
        bad = [s for s in statuses or () if s not in RUN_STATUSES]
        if bad:
            raise Refused(f"unknown run status {', '.join(bad)}; use {', '.join(RUN_STATUSES)}", "InvalidRequest")
        return self.ledger.list_runs(statuses, limit)

    def health(self) -> dict[str, Any]:
        """Can the app reach what it needs? Storage (the ledger), and each target's management API (one try)."""
        checks: dict[str, dict[str, Any]] = {}
        started = time.monotonic()
        try:
            self.ledger.list_runs(("Training",), limit=1)
            checks["storage"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            checks["storage"] = {"ok": False, "error": type(exc).__name__}
        for target in self.settings.targets:
            serving = self.services.serving(target)
            checks[f"{serving.label}:{target.name}"] = serving.health()
        ok = all(c["ok"] for c in checks.values())
        return {"status": "ok" if ok else "degraded", "checks": checks,
                "eventGrid": "configured" if self.settings.eventgrid_endpoint else "not configured",
                "targets": [t.name for t in self.settings.targets],
                "durationMs": int((time.monotonic() - started) * 1000)}
