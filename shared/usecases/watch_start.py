"""Starting the watch of a deployment that went live (see `watch`): recorded in the ledger, so it survives a
restart and reconcile carries it out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.ports.ledger import Ledger
from shared.records import Run, Watch, iso
from shared.settings import Settings


def start_watch(settings: Settings, ledger: Ledger, run: Run) -> None:
    """Watch a run's deployment (`run-<run id>` on each of its endpoints) for RETRAIN_WATCH_MINUTES."""
    if settings.watch_minutes <= 0 or not run.model_path:
        return
    until = iso(datetime.now(UTC) + timedelta(minutes=settings.watch_minutes))
    ledger.add_watch(Watch(id=f"run-{run.id}", target=run.target, run_id=run.id, model_path=run.model_path,
                           model_base=run.model_base, until=until, smoke_row=run.smoke_row or None))
