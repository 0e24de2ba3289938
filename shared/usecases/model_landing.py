"""A `.ilearner` landed in the models container: promote the run that wrote it, or deploy a model a person dropped
there (by its path: `models/<tenant>/<file>.ilearner` goes to that tenant's endpoint). A dropped file that is
empty, routes nowhere, or that no endpoint could serve is moved to rejected/ with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from shared.decisions import route, unreadable_name
from shared.errors import DataRejected, NotFound
from shared.events import ModelRejected
from shared.logs import context
from shared.ports.blobs import BlobInfo, BlobStore
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.records import BlobRef, PromoteResult, Run, iso, now_iso, run_id_for
from shared.settings import Settings
from shared.usecases.promotion import Promotion


@dataclass
class ModelLanding:
    """A `.ilearner` in the models container: its run's promotion, or a hand-dropped model's deployment."""

    settings: Settings
    storage: BlobStore
    ledger: Ledger
    services: Services
    events: EventSink
    promotion: Promotion

    def landed(self, ref: BlobRef, trigger: str = "blob") -> PromoteResult | None:
        if not ref.name.lower().endswith(".ilearner"):
            return None
        problem = unreadable_name(ref.name)
        if problem is not None:  # it cannot be moved either: a note in rejected/ says where it is and why
            message = f"the file cannot be read back: {problem}; it stays where it is"
            run_id = run_id_for(ref.path, "unreadable")
            self._record_rejection(ref, run_id, trigger, f"UnreadableName: {message}")
            note = self.storage.note_unreadable(ref, {"code": "UnreadableName", "message": message, "runId": run_id})
            self.events.publish(ModelRejected(subject=ref.path, run_id=run_id, model=ref.path, code="UnreadableName",
                                              reason=message, reason_at=note.path))
            return PromoteResult(run_id, "Rejected", reason=message)
        first = ref.name.split("/", 1)[0]
        run = self.ledger.get_run(first) if "/" in ref.name else None
        if run is not None and run.kind == "bes":
            return self.promotion.promote(run)
        try:
            props = self.storage.info(ref)
        except NotFound:
            return None
        run_id = run_id_for(ref.path, props.etag)
        with context(run=run_id):
            return self._hand_dropped(ref, run_id, props, trigger)

    def _hand_dropped(self, ref: BlobRef, run_id: str, props: BlobInfo, trigger: str) -> PromoteResult:
        sibling = BlobRef(ref.container, ref.name.rsplit("/", 1)[0] + "/evaluation.csv") if "/" in ref.name \
            else None
        metrics: dict[str, float] = {}
        try:
            if props.size == 0:
                raise DataRejected("EmptyModel", "the model file is empty")
            where = route(self.settings.targets, ref.name)
            if where.tenant is not None and self.services.serving(where.target).endpoint(where.tenant) is None:
                raise DataRejected("NoSuchEndpoint", f"the file routes to endpoint '{where.tenant}', which does not "
                                                     f"exist on target '{where.target.name}'")
            if sibling is not None and self.storage.exists(sibling):  # an evaluation there must be usable
                metrics = self.storage.read_evaluation(sibling, self.settings.gate.metrics)
        except DataRejected as exc:
            self._record_rejection(ref, run_id, trigger, f"{exc.code}: {exc.message}")
            self.reject(ref, run_id, exc.code, exc.message)
            return PromoteResult(run_id, "Rejected", reason=exc.message)
        now = now_iso()
        run, _ = self.ledger.create_run(Run(
            id=run_id, kind="manual", status="Trained", target=where.target.name, endpoints=where.endpoints,
            data_time=iso(props.last_modified), model_path=ref.path, trigger=trigger, finished_at=now,
            metrics=metrics, evaluation_path=sibling.path if metrics and sibling else None,
            transitions=[{"status": "Trained", "at": now, "reason": "a model dropped into models/ by hand"}]))
        was = run.status
        result = self.promotion.promote(run, force=not run.metrics, unservable_is_rejection=True)
        if run.status == "Rejected":  # no endpoint could serve it: the file is bad; keep it in rejected/
            result.status, result.reason = "Rejected", run.error
            if was != "Rejected":
                self.reject(ref, run.id, "ModelNotServable", str(run.error).removeprefix("ModelNotServable: "))
        return result

    def _record_rejection(self, ref: BlobRef, run_id: str, trigger: str, reason: str) -> None:
        """A run row for a hand-dropped file rejected before any deployment, so the runs list tells of it too."""
        self.ledger.create_run(Run(id=run_id, kind="manual", status="Rejected", target="?", model_path=ref.path,
                                   trigger=trigger, error=reason,
                                   transitions=[{"status": "Rejected", "at": now_iso(), "reason": reason}]))

    def reject(self, ref: BlobRef, run_id: str, code: str, message: str) -> None:
        moved = self.storage.reject(ref, {"code": code, "message": message, "runId": run_id})
        self.events.publish(ModelRejected(subject=ref.path, run_id=run_id, model=ref.path, code=code, reason=message,
                                          moved_to=moved.path))
