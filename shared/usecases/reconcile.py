"""The reconcile timer's work: finish what a missed event or a crash left - runs never submitted, jobs to start or
poll, finished jobs whose model no trigger promoted - and cancel jobs past their deadline."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.decisions import ACTIVE_RUN_STATUSES
from shared.errors import ServiceError, describe
from shared.logs import context
from shared.operator_rules import finish_past_gate, unservable_is_rejection
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.ports.training import JobState
from shared.records import Run
from shared.settings import Settings
from shared.usecases.approvals import Approvals
from shared.usecases.intake import TrainingIntake
from shared.usecases.poisoned_blobs import PoisonedBlobs
from shared.usecases.promotion import Promotion
from shared.usecases.training import TrainingJobs
from shared.usecases.watch import Watching

log = logging.getLogger("shared.usecases.reconcile")


@dataclass
class Reconciler:
    """One reconcile pass over the runs that still need work."""

    settings: Settings
    ledger: Ledger
    services: Services
    events: EventSink
    intake: TrainingIntake
    jobs: TrainingJobs
    promotion: Promotion
    approvals: Approvals
    watching: Watching
    poisoned: PoisonedBlobs | None = None

    def reconcile(self) -> dict[str, int]:
        """One pass over every unfinished run (however much history there is); one run's failure is logged and
        counted, and never stops the pass."""
        summary = {"checked": 0, "promoted": 0, "failed": 0, "started": 0, "cancelled": 0, "resubmitted": 0,
                   "expired": 0, "errors": 0, "eventsSent": self._flush_events()}
        deadline = timedelta(minutes=self.settings.job_deadline_minutes)
        now = datetime.now(UTC)
        self._index_older_ledger()
        for run in self.ledger.unfinished_runs(ACTIVE_RUN_STATUSES):
            summary["checked"] += 1
            with context(run=run.id):
                try:
                    done = self._one(run, now, deadline)
                    if done:
                        summary[done] += 1
                except ServiceError as exc:
                    log.warning("reconcile of run %s: %s", run.id, describe(exc))
                    summary["errors"] += 1
                except Exception:
                    log.exception("reconcile of run %s failed; going on with the others", run.id)
                    summary["errors"] += 1
        try:
            summary.update(self.watching.check_all())
        except Exception:
            log.exception("the watches could not be checked; the next pass tries again")
            summary["errors"] += 1
        if self.poisoned is not None:
            try:
                summary["poisonTakenAgain"] = self.poisoned.drain()
            except Exception:
                log.exception("the poison messages the app failed on could not be read; the next pass tries again")
                summary["errors"] += 1
        return summary

    def _index_older_ledger(self) -> None:
        """A ledger written before the run index gets it on the first pass (idempotent; until then runs are found
        by a full scan)."""
        try:
            self.ledger.prepare(migrate=True)
        except Exception:
            log.exception("could not index the ledger's runs; this pass scans them, the next tries again")

    def _flush_events(self) -> int:
        try:
            return self.events.flush()
        except Exception:
            log.exception("could not send the outbox's events; the next pass tries again")
            return 0

    def _one(self, run: Run, now: datetime, deadline: timedelta) -> str:
        """Move one run on; returns what was done (a summary key), or "" for nothing."""
        age = now - datetime.fromisoformat((run.submitted_at or run.created_at).replace("Z", "+00:00"))
        if run.status == "AwaitingApproval":  # an operator decides; unless nobody did for too long
            return "expired" if self.approvals.expire_if_due(run, now) else ""
        if run.kind == "manual":  # a hand-dropped model or an operator's action whose deployment did not finish
            done = self.promotion.promote(run, force=finish_past_gate(run),
                                          unservable_is_rejection=unservable_is_rejection(run))
            return "promoted" if done.status == "Done" else ""
        if run.status in ("Trained", "Deploying"):  # its model landed where no trigger saw it, or a retry is due
            return "promoted" if self.promotion.promote(run).status == "Done" else ""
        if run.status == "Accepted":
            if run.claimed_until < time.time() and run.data_path:  # nobody holds it: its claimant died
                self.intake.resume(run)
                return "resubmitted"
            return ""
        training = self.services.training(run.target)
        assert run.job_id is not None
        state = training.state(run.job_id)
        if run.status == "Submitted" and state.phase in ("NotStarted", "Running", "Finished"):
            if state.phase == "NotStarted":  # a crash between the submit and the start
                training.start(run.job_id)
            self.intake.submission.started(run)  # recorded and announced, as the start would have
            if state.phase != "Finished":
                return "started"
        if state.phase in ("NotStarted", "Running"):
            if age <= deadline:
                return ""
            training.cancel(run.job_id)
            self.jobs.ended(run, JobState("Failed", f"the job ran past the deadline of {deadline}"),
                            status="DeadlineExceeded")
            return "cancelled"
        if state.phase in ("Failed", "Cancelled"):
            self.jobs.ended(run, state)
            return "failed"
        return "promoted" if self.promotion.promote(run).status == "Done" else ""
