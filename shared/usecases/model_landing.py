"""A file landed in the models container: a run's model promotes that run; another output of a run (its evaluation,
Azure ML's model and evaluation folders) is left to it; a model a person dropped there is deployed (by its path:
`models/<tenant>/<file>.ilearner` goes to that tenant's endpoint), with an `evaluation.csv` beside it read when it
lands. Everything else is not taken and says so: a dropped model that is empty, routes nowhere or only to the default
endpoint, or that no endpoint could serve, and any other file (not a model) - moved to rejected/ with the reason, a
Rejected run on the status page and an event."""

from __future__ import annotations

import logging
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

log = logging.getLogger("shared.usecases.model_landing")
MODEL_SUFFIX, EVALUATION_NAME = ".ilearner", "evaluation.csv"


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
        """What a file in models/ is, and what is done with it; None when there is nothing to do (logged why)."""
        problem = unreadable_name(ref.name)
        if problem is not None:  # it cannot be moved either: a note in rejected/ says where it is and why
            return self.left_in_place(ref, "UnreadableName", f"the file cannot be read back: {problem}; it stays "
                                      "where it is", trigger)
        first = ref.name.split("/", 1)[0]
        run = self.ledger.get_run(first) if "/" in ref.name else None
        if run is not None and run.kind == "bes":
            if ref.path == run.model_path:
                return self.promotion.promote(run)
            if self._an_output_of(run, ref):
                log.info("%s is an output of run %s (its model: %s): nothing to do", ref.path, run.id, run.model_path)
                return None
        if "/" in ref.name and ref.name.rsplit("/", 1)[1] == EVALUATION_NAME:
            log.info("%s is kept: it is read when a model lands beside it", ref.path)
            return None
        try:
            props = self.storage.info(ref)
        except NotFound:
            log.info("%s no longer exists; nothing to do", ref.path)
            return None
        run_id = run_id_for(ref.path, props.etag)
        with context(run=run_id):
            if not ref.name.lower().endswith(MODEL_SUFFIX):
                return self._not_taken(ref, run_id, trigger, "UnsupportedFileType", "only models (.ilearner, with "
                                       f"an optional {EVALUATION_NAME} beside them) are taken in the models container"
                                       + (f"; models/{first}/ holds the outputs of run {first}" if run else ""))
            if run is not None:
                return self._not_taken(ref, run_id, trigger, "NotTheRunsModel", f"models/{first}/ holds the outputs "
                                       f"of run {first}, whose model is {run.model_path}: drop a model of your own "
                                       "in a tenant folder")
            return self._hand_dropped(ref, run_id, props, trigger)

    @staticmethod
    def _an_output_of(run: Run, ref: BlobRef) -> bool:
        """A file a run's job writes: its model and evaluation, or anything inside their folders when they are
        folders of their own (Azure ML's `model/` and `evaluation/`); every file of a run not submitted yet."""
        if run.model_path is None:
            return True
        folder = f"{ref.container}/{ref.name.split('/', 1)[0]}"
        owned = [p for p in (run.model_path, run.evaluation_path) if p]
        owned += [p.rsplit("/", 1)[0] for p in owned if p.rsplit("/", 1)[0] != folder]
        return any(ref.path == p or ref.path.startswith(p + "/") for p in owned)

    def _not_taken(self, ref: BlobRef, run_id: str, trigger: str, code: str, message: str) -> PromoteResult:
        log.warning("%s is not taken (%s): %s; moved to rejected/", ref.path, code, message)
        self._record_rejection(ref, run_id, trigger, f"{code}: {message}")
        self.reject(ref, run_id, code, message)
        return PromoteResult(run_id, "Rejected", reason=message)

    def _hand_dropped(self, ref: BlobRef, run_id: str, props: BlobInfo, trigger: str) -> PromoteResult:
        sibling = BlobRef(ref.container, ref.name.rsplit("/", 1)[0] + "/evaluation.csv") if "/" in ref.name \
            else None
        metrics: dict[str, float] = {}
        try:
            if props.size == 0:
                raise DataRejected("EmptyModel", "the model file is empty")
            where = route(self.settings.targets, ref.name)
            protected = self.services.serving(where.target).protected_endpoint()
            if protected is not None and set(where.endpoints) == {protected}:
                raise DataRejected("DefaultEndpoint", f"the file routes to '{protected}', the default endpoint, which "
                                   "is never changed (it follows the experiment)")
            if where.tenant is not None and self.services.serving(where.target).endpoint(where.tenant) is None:
                raise DataRejected("NoSuchEndpoint", f"the file routes to endpoint '{where.tenant}', which does not "
                                                     f"exist on target '{where.target.name}'")
            if sibling is not None and self.storage.exists(sibling):  # an evaluation there must be usable
                metrics = self.storage.read_evaluation(sibling, self.settings.gate.metrics)
        except DataRejected as exc:
            return self._not_taken(ref, run_id, trigger, exc.code, exc.message)
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

    def left_in_place(self, ref: BlobRef, code: str, message: str, trigger: str) -> PromoteResult:
        """A file that is not taken and cannot be moved: a note in rejected/ saying where the file is and why it
        stays, an event, then a Rejected run - the run last, so a call that fails half-way is done again in full
        (the note is written once; a second call finds the run and does nothing)."""
        run_id = run_id_for(ref.path, "unreadable" if code == "UnreadableName" else code.lower())
        if self.ledger.get_run(run_id) is None:
            note = self.storage.note_unreadable(ref, {"code": code, "message": message, "runId": run_id})
            self.events.publish(ModelRejected(subject=ref.path, run_id=run_id, model=ref.path, code=code,
                                              reason=message, reason_at=note.path))
            self._record_rejection(ref, run_id, trigger, f"{code}: {message}")
        return PromoteResult(run_id, "Rejected", reason=message)

    def _record_rejection(self, ref: BlobRef, run_id: str, trigger: str, reason: str) -> bool:
        """A run row for a hand-dropped file rejected before any deployment, so the runs list tells of it too; True
        when this call wrote it."""
        return self.ledger.create_run(Run(id=run_id, kind="manual", status="Rejected", target="?", model_path=ref.path,
                                   trigger=trigger, error=reason,
                                   transitions=[{"status": "Rejected", "at": now_iso(), "reason": reason}]))[1]

    def reject(self, ref: BlobRef, run_id: str, code: str, message: str) -> None:
        moved = self.storage.reject(ref, {"code": code, "message": message, "runId": run_id})
        self.events.publish(ModelRejected(subject=ref.path, run_id=run_id, model=ref.path, code=code, reason=message,
                                          moved_to=moved.path))
