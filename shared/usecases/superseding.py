"""Ending a run that a run on newer data for the same endpoints replaces: it never deploys (or trains), and points
at the run that replaced it."""

from __future__ import annotations

from shared.events import RunSuperseded
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.records import Run


def supersede(ledger: Ledger, events: EventSink, run: Run, by: str, why: str) -> None:
    """RunMoved when the run moved on meanwhile (it is then left as it is)."""
    ledger.change(run, "Superseded", f"Superseded: {why} (run {by})", release_claim=True, superseded_by=by)
    events.publish(RunSuperseded(subject=run.data_path or run.id, run_id=run.id, superseded_by=by, why=why))
