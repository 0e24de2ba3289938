"""The approval step (RETRAIN_APPROVAL=manual): a run that passed the gate waits in AwaitingApproval until an
operator approves it (then it deploys) or rejects it; a waiting run expires after RETRAIN_APPROVAL_EXPIRY_HOURS -
whoever looks first, the timer or an operator's decision, ends it -, and a newer run for the same endpoints
supersedes it (see `Promotion`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.errors import NotFound, Refused
from shared.events import RunApproved, RunExpired, RunRejected
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.records import Run
from shared.settings import Settings
from shared.usecases.promotion import Promotion


@dataclass
class Approvals:
    """An operator's yes or no to a waiting run, and the expiry of runs nobody decided on."""

    settings: Settings
    ledger: Ledger
    events: EventSink
    promotion: Promotion

    def approve(self, run_id: str, caller: str) -> Run:
        run = self._waiting(run_id)
        self.ledger.change(run, "Deploying", note=f"approved by {caller}")
        self.events.publish(RunApproved(subject=run.model_path or run.id, run_id=run.id, by=caller))
        self.promotion.promote(run)
        return run

    def reject(self, run_id: str, caller: str, reason: str | None) -> Run:
        run = self._waiting(run_id)
        self.ledger.change(run, "Rejected", f"RejectedByOperator: {caller}" + (f": {reason}" if reason else ""))
        self.events.publish(RunRejected(subject=run.model_path or run.id, run_id=run.id, by=caller, reason=reason))
        return run

    def expire_if_due(self, run: Run, now: datetime) -> bool:
        """End a run that waited longer than RETRAIN_APPROVAL_EXPIRY_HOURS; True when it did."""
        since = next((t["at"] for t in reversed(run.transitions) if t["status"] == "AwaitingApproval"),
                     run.updated_at)
        waited = now - datetime.fromisoformat(since.replace("Z", "+00:00")).astimezone(UTC)
        if waited < timedelta(hours=self.settings.approval_expiry_hours):
            return False
        self.ledger.change(run, "Cancelled", f"ApprovalExpired: nobody approved it within "
                           f"{self.settings.approval_expiry_hours:g} h")
        self.events.publish(RunExpired(subject=run.model_path or run.id, run_id=run.id))
        return True

    def _waiting(self, run_id: str) -> Run:
        """The run, if it still waits: one past its expiry is expired now (the timer may not have come by yet) and
        refused, as are runs in any other state."""
        run = self.ledger.get_run(run_id)
        if run is None:
            raise NotFound(f"no run '{run_id}'")
        if run.status == "AwaitingApproval" and self.expire_if_due(run, datetime.now(UTC)):
            raise Refused(f"run {run_id} waited longer than RETRAIN_APPROVAL_EXPIRY_HOURS "
                          f"({self.settings.approval_expiry_hours:g} h) and has expired; retrain to decide on new "
                          "data", "ApprovalExpired", conflict=True)
        if run.status != "AwaitingApproval":
            raise Refused(f"run {run_id} is {run.status}, not AwaitingApproval", "NotAwaitingApproval", conflict=True)
        return run
