"""Ending a run that a run on newer data for the same endpoints replaces: it never deploys (or trains), and points
at the run that replaced it."""

from __future__ import annotations

from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.decisions import advance
from shared.records import Run


def supersede(ledger: Ledger, events: EventPublisher, run: Run, by: str, why: str) -> None:
    advance(run, "Superseded", f"Superseded: {why} (run {by})")
    run.superseded_by = by
    run.claimed_by, run.claimed_until = None, 0.0
    ledger.save_run(run, check_etag=False)
    events.publish("RunSuperseded", run.data_path or run.id, {"runId": run.id, "supersededBy": by, "why": why})
