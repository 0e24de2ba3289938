"""Burst coalescing: files for the same endpoints landing within RETRAIN_COALESCE_SECONDS become one training run,
on the newest file; the older ones end Superseded, pointing at the run that replaced them, and no training job (the
service bills every job) is started for them. With RETRAIN_CANCEL_SUPERSEDED_JOBS a job still running for older data for
exactly the same endpoints is cancelled when newer data is accepted."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.decisions import ENDPOINTS_METADATA, endpoints_override, route
from shared.errors import DataRejected, Refused, RunMoved, ServiceError, describe
from shared.ports.blobs import BlobInfo, BlobStore
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.records import BlobRef, Run, run_id_for
from shared.settings import Settings
from shared.usecases.claims import keep_claim
from shared.usecases.superseding import supersede

log = logging.getLogger("shared.usecases.coalescing")


@dataclass
class Coalescing:
    """Decides, once a file is valid, whether a newer file replaces it before its job is paid for."""

    settings: Settings
    storage: BlobStore
    ledger: Ledger
    services: Services
    events: EventSink

    def settle(self, run: Run, ref: BlobRef) -> bool:
        """Wait out the window after the file landed; True when a newer file in its folder replaced it (the run
        is then Superseded). Otherwise older jobs for the same endpoints are cancelled, and the run goes on."""
        window = self.settings.coalesce_seconds
        if window > 0:
            landed = datetime.fromisoformat(run.data_time.replace("Z", "+00:00")).astimezone(UTC)
            self._wait_until(landed + timedelta(seconds=window), run)
            newer = self.storage.newest_sibling(ref, ".csv", lambda b: self._same_endpoints(run, b) and
                                                self._newer(run, ref, b, landed))
            if newer is not None:
                by = run_id_for(f"{ref.container}/{newer.name}", newer.etag)
                supersede(self.ledger, self.events, run, by, f"newer data for the same endpoints ({newer.name}) "
                          "landed within RETRAIN_COALESCE_SECONDS")
                return True
        if self.settings.cancel_superseded_jobs:
            self._cancel_older_jobs(run)
        return False

    def _newer(self, run: Run, ref: BlobRef, other: BlobInfo, landed: datetime) -> bool:
        """Whether a file beside the run's holds newer data, in the one total order of runs (`Run.order`): a later
        Last-Modified; within the same second, its run's order - a file not taken in yet is newer, since its run
        will be taken in after this one."""
        stamp = other.last_modified.replace(microsecond=0)
        if stamp != landed.replace(microsecond=0):
            return stamp > landed
        theirs = self.ledger.get_run(run_id_for(f"{ref.container}/{other.name}", other.etag))
        return theirs is None or theirs.order > run.order

    def _same_endpoints(self, run: Run, other: BlobInfo) -> bool:
        """Whether a file beside the run's retrains the same endpoints (its route, with the endpoints it names)."""
        try:
            named = endpoints_override(other.metadata.get(ENDPOINTS_METADATA))
            return route(self.settings.targets, other.name, named).endpoints == run.endpoints
        except (DataRejected, Refused):
            return False

    def _wait_until(self, until: datetime, run: Run) -> None:
        """Sleep until `until`, keeping this invocation's claim on the run alive."""
        while (left := (until - datetime.now(UTC)).total_seconds()) > 0:
            time.sleep(min(left, 1.0))
            keep_claim(self.ledger, run, self.settings.lease_seconds)

    def _cancel_older_jobs(self, run: Run) -> None:
        for other in self.ledger.list_runs(("Submitted", "Training"), limit=1000):
            if other.id == run.id or other.target != run.target or other.endpoints != run.endpoints or \
                    other.order > run.order or not other.job_id:
                continue
            try:
                training = self.services.training(other.target)
                if training.state(other.job_id).phase not in ("NotStarted", "Running"):
                    continue  # its model is made (and paid for): newest-wins decides at deployment
                training.cancel(other.job_id)
            except ServiceError as exc:
                log.warning("could not cancel the job of superseded run %s: %s", other.id, describe(exc))
                continue
            try:
                supersede(self.ledger, self.events, other, run.id, "newer data for exactly the same endpoints was "
                          "accepted; its job was cancelled")
            except RunMoved:
                log.info("run %s moved on before it could be marked superseded", other.id)
