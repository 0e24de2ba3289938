"""Training data in: a landed (or uploaded) CSV is validated as a stream, routed to its endpoints, and its training
job submitted and started - once per file version, however often the event is delivered. Bad data is moved to
rejected/ with the reason, and never reaches a job."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared import failpoints
from shared.decisions import (
    ENDPOINTS_METADATA,
    blob_in,
    check_data_file,
    endpoints_override,
    route,
    unreadable_name,
    upload_routing_problem,
)
from shared.errors import AlreadyExists, ClaimLost, DataRejected, NotFound, Refused, RunMoved, Stale
from shared.events import TrainingDataAccepted, TrainingDataRejected
from shared.logs import context
from shared.ports.blobs import BlobStore
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.records import BlobRef, Run, iso, now_iso, run_id_for
from shared.settings import Settings
from shared.usecases.claims import keep_claim
from shared.usecases.coalescing import Coalescing
from shared.usecases.submission import JobSubmission
from shared.validation import DataSpec, validate_csv

log = logging.getLogger("shared.usecases.intake")
UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,200}\.csv")


@dataclass
class TrainingIntake:
    """Accept a data file (landed or uploaded): validate, route, submit and start its training job."""

    settings: Settings
    storage: BlobStore
    ledger: Ledger
    services: Services
    events: EventSink
    submission: JobSubmission
    coalescing: Coalescing

    def accept(self, ref: BlobRef, trigger: str = "blob", caller: str | None = None) -> Run | None:
        """Validate a landed data file and start its training job. Redeliveries return the same run."""
        problem = unreadable_name(ref.name)
        if problem is not None:
            return self._unreadable(ref, problem, trigger)
        try:
            props = self.storage.info(ref)
        except NotFound:
            log.info("%s no longer exists; nothing to do", ref.path)
            return None
        run_id = run_id_for(ref.path, props.etag)
        with context(run=run_id):
            owner = uuid.uuid4().hex
            draft = Run(id=run_id, target="?", data_path=ref.path, data_etag=props.etag,
                        data_time=iso(props.last_modified), trigger=trigger, caller=caller, claimed_by=owner,
                        claimed_until=time.time() + self.settings.lease_seconds,
                        transitions=[{"status": "Accepted", "at": now_iso()}])
            run, created = self.ledger.create_run(draft)
            failpoints.reached("after-accept")
            if not created:
                if run.status != "Accepted":
                    log.info("%s was handled already (run %s is %s)", ref.path, run.id, run.status)
                    return run
                run = self._claim_or_wait(run, owner)
                if run.claimed_by != owner:
                    log.info("%s was handled by another invocation (run %s is %s)", ref.path, run.id, run.status)
                    return run
            try:
                named = endpoints_override(props.metadata.get(ENDPOINTS_METADATA))
                return self._accept(run, ref, props.size, named, trigger)
            except (ClaimLost, RunMoved):
                log.warning("run %s: another invocation took the work over", run.id)
                run.claimed_by = None  # not ours any more: the row is left to whoever took it
                return self.ledger.get_run(run.id) or run
            finally:
                if run.claimed_by == owner and run.status == "Accepted":
                    self.ledger.change(run, release_claim=True)

    def resume(self, run: Run) -> Run | None:
        """Go on with a run a crash left Accepted - unless its file version is gone (replaced or deleted): then
        the run ends Cancelled, saying so (a new version is a run of its own)."""
        assert run.data_path is not None
        ref = BlobRef.parse(run.data_path)
        try:
            props = self.storage.info(ref)
        except NotFound:
            return self._version_gone(run, "deleted")
        if props.etag != run.data_etag:
            return self._version_gone(run, "replaced by a newer version")
        return self.accept(ref, trigger="reconcile")

    def _version_gone(self, run: Run, how: str) -> Run:
        self.ledger.change(run, "Cancelled", f"VersionGone: the file was {how} before it could be read in full; that "
                           "version no longer exists", release_claim=True, finished_at=now_iso())
        log.warning("run %s: %s", run.id, run.error)
        return run

    def _unreadable(self, ref: BlobRef, problem: str, trigger: str) -> Run:
        """A file the SDK cannot read back: recorded as rejected (with a reason file and an event); it stays put."""
        return self.left_in_place(ref, "UnreadableName", f"the file cannot be read back: {problem}; it stays where "
                                  "it is (rename it to retrain)", trigger)

    def left_in_place(self, ref: BlobRef, code: str, message: str, trigger: str) -> Run:
        """A file that is not taken and cannot be moved: a note in rejected/ saying where the file is and why it
        stays, an event, then a Rejected run - the run last, so a call that fails half-way is done again in full
        (the note is written once; a second call finds the run and does nothing)."""
        key = "unreadable" if code == "UnreadableName" else code.lower()  # (the id unreadable files always had)
        run_id = run_id_for(ref.path, key)
        found = self.ledger.get_run(run_id)
        if found is not None:
            return found
        note = self.storage.note_unreadable(ref, {"code": code, "message": message, "runId": run_id})
        self.events.publish(TrainingDataRejected(subject=ref.path, run_id=run_id, blob=ref.path, code=code,
                                                 message=message, reason_at=note.path))
        run, _ = self.ledger.create_run(Run(
            id=run_id, target="?", status="Rejected", data_path=ref.path, trigger=trigger, error=f"{code}: {message}",
            transitions=[{"status": "Rejected", "at": now_iso(), "reason": f"{code}: {message}"}]))
        return run

    def from_blob(self, path: str, trigger: str = "http") -> Run | None:
        """Retrain from a file already in the data container."""
        ref = blob_in(self.settings.data_container, path, "training data")
        if not self.storage.exists(ref):
            raise NotFound(f"{ref.path} does not exist")
        return self.accept(ref, trigger=trigger)

    def from_upload(self, name: str, data: bytes, trigger: str = "http", endpoints: str | None = None,
                    caller: str | None = None) -> Run | None:
        """Store an uploaded CSV in the data container (never over an existing file: a name holds one version, and
        the same bytes again are a retry of the same upload), then accept it like a landed file. A file outside a
        tenant folder would retrain every endpoint of the target: the caller must name them (`endpoints`, `*` for
        all), and the choice travels with the file (blob metadata)."""
        if not UPLOAD_NAME.fullmatch(name) or ".." in name:
            raise Refused("name must be a relative path ending in .csv (letters, digits, . _ - /)")
        named = endpoints_override(endpoints)
        problem = upload_routing_problem(self.settings.targets, name, named)
        if problem is not None:
            raise Refused(problem, "TenantRequired")
        ref = BlobRef(self.settings.data_container, name)
        try:
            self.storage.create(ref, data, "text/csv", {ENDPOINTS_METADATA: ",".join(named)} if named else None)
        except AlreadyExists:
            raise Refused(f"{ref.path} exists already with other content; upload under a new name (files are "
                          "never overwritten: the one there may be the data behind a live model)", "BlobExists",
                          conflict=True) from None
        return self.accept(ref, trigger=trigger, caller=caller)

    def _claim_or_wait(self, run: Run, owner: str) -> Run:
        """Claim an Accepted run for this invocation - at once when free, else when the claim of whoever holds it
        lapses (a live holder renews it; a dead one's is over within RETRAIN_LEASE_SECONDS). Returns the run:
        claimed by `owner`, or as another invocation left it once it moved on."""
        deadline = time.monotonic() + self.settings.lease_seconds + 5
        current = run
        while True:
            if current.status != "Accepted":
                return current
            if not (current.claimed_by and current.claimed_until > time.time()):
                try:
                    return self.ledger.change(current, if_unchanged=True, claimed_by=owner,
                                              claimed_until=time.time() + self.settings.lease_seconds)
                except Stale:
                    pass  # someone else claimed it first: look again
            if time.monotonic() > deadline:
                return current
            time.sleep(1.0)
            current = self.ledger.get_run(run.id) or current

    def _renewing(self, chunks: Iterator[bytes], run: Run) -> Iterator[bytes]:
        """The file's chunks, renewing this invocation's claim on the run while they are read."""
        for chunk in chunks:
            keep_claim(self.ledger, run, self.settings.lease_seconds)
            yield chunk
            failpoints.reached("mid-validation")

    def _accept(self, run: Run, ref: BlobRef, size: int, endpoints: list[str] | None = None,
                trigger: str = "blob") -> Run:
        if run.rows is not None:  # validated and announced by an earlier try: only the submit is left
            return self._go_on(run, ref, trigger)
        s = self.settings
        placed: dict[str, Any] = {}
        try:
            check_data_file(ref.name, size, s.max_data_bytes)
            where = route(s.targets, ref.name, endpoints)
            placed = {"target": where.target.name, "endpoints": where.endpoints}
            protected = self.services.serving(where.target).protected_endpoint()
            if protected is not None and set(where.endpoints) == {protected}:  # refused before any (billed) job
                raise DataRejected("DefaultEndpoint", f"the file routes to '{protected}', the default endpoint, which "
                                   "is never retrained (it follows the experiment)")
            if where.tenant is not None and self.services.serving(where.target).endpoint(where.tenant) is None:
                raise DataRejected("NoSuchEndpoint", f"the file routes to endpoint '{where.tenant}', which does not "
                                                     f"exist on target '{where.target.name}'")
            spec = DataSpec.from_settings(s)
            report = validate_csv(self._renewing(self.storage.chunks(ref, etag=run.data_etag), run), spec)
        except DataRejected as exc:
            return self._reject(run, ref, exc, placed)
        except Stale:
            return self._version_gone(run, "replaced by a newer version")
        except NotFound:
            return self._version_gone(run, "deleted")
        self.ledger.change(run, rows=report.rows, smoke_row={k: v for k, v in report.first_row.items()
                                                             if k != s.label_column}, **placed)
        self.events.publish(TrainingDataAccepted(subject=ref.path, run_id=run.id, blob=ref.path, rows=report.rows,
                                                 bytes=report.bytes, labels=report.label_counts, target=run.target,
                                                 endpoints=run.endpoints))
        return self._go_on(run, ref, trigger)

    def _go_on(self, run: Run, ref: BlobRef, trigger: str) -> Run:
        """After validation: wait out the coalescing window, then submit - except in an HTTP call, which never waits
        the window: the run stays Accepted (claim released) and the file's storage event, or reconcile, goes on."""
        if trigger == "http" and self.settings.coalesce_seconds > 0:
            return self.ledger.change(run, release_claim=True)
        return run if self.coalescing.settle(run, ref) else self.submission.submit(run, ref)

    def _reject(self, run: Run, ref: BlobRef, exc: DataRejected, placed: dict[str, Any]) -> Run:
        log.warning("rejected %s: %s", ref.path, exc)
        moved = self.storage.reject(ref, dict(exc.as_reason(), runId=run.id))
        self.ledger.change(run, "Rejected", f"{exc.code}: {exc}", release_claim=True, **placed)
        self.events.publish(TrainingDataRejected(subject=ref.path, run_id=run.id, blob=ref.path, code=exc.code,
                                                 message=exc.message, line=exc.line, moved_to=moved.path))
        return run
