"""The approval step (RETRAIN_APPROVAL=manual): a run that passed the gate waits in AwaitingApproval until an
operator approves it (then it deploys) or rejects it; a waiting run expires after RETRAIN_APPROVAL_EXPIRY_HOURS,
and a newer run for the same endpoints supersedes it (see `Promotion`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.decisions import advance
from shared.errors import NotFound, Refused
from shared.records import Run
from shared.settings import Settings
from shared.usecases.promotion import Promotion


@dataclass
class Approvals:
    """An operator's yes or no to a waiting run, and the expiry of runs nobody decided on."""

    settings: Settings
    ledger: Ledger
    events: EventPublisher
    promotion: Promotion

    def approve(self, run_id: str, caller: str) -> Run:
        run = self._waiting(run_id)
        advance(run, "Deploying")
        run.transitions[-1]["reason"] = f"approved by {caller}"
        self.ledger.save_run(run, check_etag=False)
        self.events.publish("RunApproved", run.model_path or run.id, {"runId": run.id, "by": caller})
        self.promotion.promote(run)
        return run

    def reject(self, run_id: str, caller: str, reason: str | None) -> Run:
        run = self._waiting(run_id)
        advance(run, "Rejected", f"RejectedByOperator: {caller}" + (f": {reason}" if reason else ""))
        self.ledger.save_run(run, check_etag=False)
        self.events.publish("RunRejected", run.model_path or run.id, {"runId": run.id, "by": caller,
                                                                      "reason": reason})
        return run

    def expire_if_due(self, run: Run, now: datetime) -> bool:
        """End a run that waited longer than RETRAIN_APPROVAL_EXPIRY_HOURS; True when it did."""
        since = next((t["at"] for t in reversed(run.transitions) if t["status"] == "AwaitingApproval"),
                     run.updated_at)
        waited = now - datetime.fromisoformat(since.replace("Z", "+00:00")).astimezone(UTC)
        if waited < timedelta(hours=self.settings.approval_expiry_hours):
            return False
        advance(run, "Cancelled", f"ApprovalExpired: nobody approved it within "
                                  f"{self.settings.approval_expiry_hours:g} h")
        self.ledger.save_run(run, check_etag=False)
        self.events.publish("RunExpired", run.model_path or run.id, {"runId": run.id})
        return True

    def _waiting(self, run_id: str) -> Run:
        run = self.ledger.get_run(run_id)
        if run is None:
            raise NotFound(f"no run '{run_id}'")
        if run.status != "AwaitingApproval":
            raise Refused(f"run {run_id} is {run.status}, not AwaitingApproval", "NotAwaitingApproval", conflict=True)
        return run
