"""The use cases: accept training data, submit the BES job, promote a trained model (gate, fan-out PATCH,
verify, roll back), patch by hand, roll back, add an endpoint, and reconcile. Each is idempotent and safe to run
again after a crash at any line: the ledger says what was done, and every step checks it first.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

from shared.classic.errors import StudioApiError, TransportError
from shared.classic.models import AzureBlobDataReference, BatchJobRequest, Endpoint, JobStatus, ResourceLocation
from shared.ledger import (
    BATCH_ENDPOINTS,
    RUN_STATUSES,
    Begun,
    Current,
    Deployment,
    LeaseBusy,
    LedgerDeployments,
    Run,
    new_operation_id,
    now_iso,
    run_id_for,
)
from shared.logs import context
from shared.sas import needs_refresh
from shared.services import Services
from shared.settings import Target
from shared.storage import BlobRef
from shared.validation import DataRejected, DataSpec, validate_csv

log = logging.getLogger("shared.pipeline")
ENDPOINT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$")
CLAIM_SECONDS = 600
LEASE_WAIT_SECONDS = 300
T = TypeVar("T")


class NotFound(LookupError):
    """A run, endpoint or deployment that does not exist."""


class Refused(ValueError):
    """An operation refused by a rule: `code` names the rule; `conflict` marks a refusal due to the present state
    (default endpoint, nothing to roll back to) rather than to a malformed request."""

    def __init__(self, message: str, code: str = "InvalidRequest", conflict: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.conflict = conflict


MODEL_REFUSED = "the service refused the model"


@dataclass
class EndpointResult:
    endpoint: str
    outcome: str
    reason: str | None = None
    deployment_id: str | None = None

    @property
    def model_refused(self) -> bool:
        """The model itself is the problem: the service would not take it (HTTP 400) or could not serve it."""
        return self.outcome == "RolledBack" or (self.outcome == "Failed" and
                                                (self.reason or "").startswith(MODEL_REFUSED))


@dataclass
class PromoteResult:
    run_id: str
    status: Literal["Pending", "Done", "Rejected", "Failed"]
    endpoints: list[EndpointResult] = field(default_factory=list)
    reason: str | None = None
    sas_refreshed_by_get: int = 0
    sas_minted: int = 0


@dataclass
class Route:
    target: Target
    endpoints: list[str]
    tenant: str | None = None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, StudioApiError):
        return f"{exc.code}{'/' + exc.detail_code if exc.detail_code else ''} (HTTP {exc.status}): {exc.message}"
    return str(exc)


def _wait_for_lease(take: Callable[[], T]) -> T:
    """Call `take` until it stops raising LeaseBusy (back-off up to 1 s), at most LEASE_WAIT_SECONDS."""
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    delay = 0.05
    while True:
        try:
            return take()
        except LeaseBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class ModelSource:
    """Where a model is, and a SAS location for it that is fresh enough to PATCH with.

    For a BES run the location comes from the job's Results; when its token has expired (or will within the
    margin) the job is GET again - the documented way to a fresh token - and only then is a token minted.
    """

    def __init__(self, services: Services, relative: str, base: str | None = None, target: Target | None = None,
                 job_id: str | None = None, results_location: ResourceLocation | None = None) -> None:
        self.services = services
        self.relative = relative.lstrip("/")
        self.base = base or services.minter.base_location
        self.target = target
        self.job_id = job_id
        self._location = results_location
        self._lock = threading.Lock()
        self.refreshed_by_get = 0
        self.minted = 0

    def location(self) -> ResourceLocation:
        margin = timedelta(minutes=self.services.settings.sas_refresh_margin_minutes)
        with self._lock:
            if self._location is not None and not needs_refresh(self._location.SasBlobToken, margin):
                return self._location
            if self.job_id and self.target is not None:
                try:
                    status = self.services.bes(self.target).get(self.job_id)
                    ref = (status.Results or {}).get(self.services.settings.model_output)
                    if ref is not None and ref.SasBlobToken and ref.BaseLocation and \
                            not needs_refresh(ref.SasBlobToken, margin):
                        self.refreshed_by_get += 1
                        self._location = ResourceLocation(BaseLocation=ref.BaseLocation,
                                                          RelativeLocation=ref.RelativeLocation,
                                                          SasBlobToken=ref.SasBlobToken)
                        return self._location
                except (StudioApiError, TransportError) as exc:
                    log.info("could not refresh the model token from job %s (%s); minting one", self.job_id,
                             _error_text(exc))
            if not self.services.minter.owns(self.base):
                raise Refused(f"the model at {self.base}{self.relative} is not in this app's storage account: "
                              "no fresh SAS token can be made for it", "ModelNotReachable", conflict=True)
            self.minted += 1
            self._location = self.services.minter.location(self.relative, self.services.sas_lifetime)
            return self._location


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.settings = services.settings

    # ---- routing ----------------------------------------------------------------------------------------------
    def route(self, name: str) -> Route:
        """Which target and endpoints a file (path inside its container) goes to."""
        for target in sorted(self.settings.targets, key=lambda t: len(t.data_prefix), reverse=True):
            if not name.startswith(target.data_prefix):
                continue
            rest = name[len(target.data_prefix):]
            if "/" in rest and target.tenant_routing:
                tenant = rest.split("/", 1)[0]
                if not ENDPOINT_NAME.match(tenant):
                    raise DataRejected("InvalidTenant", f"'{tenant}' is not a valid endpoint name (lower-case "
                                                        "letters, digits and inner hyphens, at most 24)")
                return Route(target, [tenant], tenant)
            if not target.endpoints:
                raise DataRejected("NoEndpoints", f"target '{target.name}' lists no endpoints "
                                                  "(RETRAIN_ENDPOINTS) for files outside a tenant folder")
            return Route(target, list(target.endpoints))
        raise DataRejected("NoTarget", f"no target takes files at '{name}'")

    def _resolve_endpoints(self, target: Target, endpoints: list[str]) -> list[str]:
        if endpoints != ["*"]:
            return endpoints
        default = self.s.default_endpoint(target)
        return [e.Name for e in self.s.management(target).list_endpoints() if e.Name != default]

    # ---- accept training data -----------------------------------------------------------------------------------
    def accept_training_data(self, ref: BlobRef, trigger: str = "blob") -> Run | None:
        """Validate a landed data file and start its training job. Redeliveries return the same run."""
        try:
            props = self.s.storage.properties(ref)
        except ResourceNotFoundError:
            log.info("%s no longer exists; nothing to do", ref.path)
            return None
        run_id = run_id_for(ref.path, str(props.etag))
        with context(run=run_id):
            landed = props.last_modified.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            draft = Run(id=run_id, target="?", data_path=ref.path, data_etag=str(props.etag), data_time=landed,
                        trigger=trigger)
            owner = uuid.uuid4().hex
            draft.claimed_by, draft.claimed_until = owner, time.time() + CLAIM_SECONDS
            run, created = self.s.ledger.create_run(draft)
            if not created:
                if run.status != "Accepted":
                    log.info("%s was handled already (run %s is %s)", ref.path, run.id, run.status)
                    return run
                if not self._claim(run, owner):
                    log.info("%s is being handled by another invocation", ref.path)
                    return run
            try:
                return self._accept(run, ref, props.size)
            finally:
                if run.claimed_by == owner and run.status == "Accepted":
                    run.claimed_by, run.claimed_until = None, 0.0
                    self._save(run)

    def _claim(self, run: Run, owner: str) -> bool:
        if run.claimed_by and run.claimed_until > time.time():
            return False
        run.claimed_by, run.claimed_until = owner, time.time() + CLAIM_SECONDS
        try:
            self.s.ledger.save_run(run)
            return True
        except ResourceModifiedError:
            return False

    def _save(self, run: Run) -> None:
        self.s.ledger.save_run(run, check_etag=False)

    def _accept(self, run: Run, ref: BlobRef, size: int) -> Run:
        try:
            if not ref.name.lower().endswith(".csv"):
                raise DataRejected("UnsupportedFileType", "training data must be a .csv file")
            if size > self.settings.max_data_bytes:
                raise DataRejected("TooLarge", f"{size} bytes is over RETRAIN_MAX_DATA_BYTES")
            route = self.route(ref.name)
            run.target, run.endpoints = route.target.name, route.endpoints
            if route.tenant is not None:
                self._require_endpoint(route.target, route.tenant)
            spec = DataSpec(self.settings.required_columns, self.settings.numeric_columns,
                            self.settings.label_column, self.settings.min_rows)
            report = validate_csv(self.s.storage.chunks(ref, etag=run.data_etag), spec)
        except DataRejected as exc:
            return self._reject_data(run, ref, exc)
        run.rows = report.rows
        run.smoke_row = {k: v for k, v in report.first_row.items() if k != self.settings.label_column}
        self._save(run)
        self.s.events.publish("TrainingDataAccepted", ref.path, {
            "runId": run.id, "blob": ref.path, "rows": report.rows, "bytes": report.bytes,
            "labels": report.label_counts, "target": run.target, "endpoints": run.endpoints})
        return self._submit(run, ref)

    def _require_endpoint(self, target: Target, name: str) -> None:
        try:
            self.s.management(target).get_endpoint(name)
        except StudioApiError as exc:
            if exc.status == 404:
                raise DataRejected("NoSuchEndpoint", f"the file routes to endpoint '{name}', which does not exist "
                                                     f"on target '{target.name}'") from None
            raise

    def _reject_data(self, run: Run, ref: BlobRef, exc: DataRejected) -> Run:
        log.warning("rejected %s: %s", ref.path, exc)
        moved = self.s.storage.reject(ref, dict(exc.as_reason(), runId=run.id))
        run.status, run.error = "Rejected", f"{exc.code}: {exc}"
        run.claimed_by, run.claimed_until = None, 0.0
        self._save(run)
        self.s.events.publish("TrainingDataRejected", ref.path, {
            "runId": run.id, "blob": ref.path, "code": exc.code, "message": exc.message, "line": exc.line,
            "movedTo": moved.path})
        return run

    def _data_reference(self, ref: BlobRef, write: bool) -> AzureBlobDataReference:
        if self.s.storage.connection_string and self.s.storage.account_key:
            return AzureBlobDataReference(ConnectionString=self.s.storage.connection_string,
                                          RelativeLocation=ref.path)
        lifetime = timedelta(minutes=self.settings.job_deadline_minutes + 60)
        minter = self.s.minter
        token = minter.write_token(ref.container, ref.name, lifetime) if write else \
            minter.read_token(ref.container, ref.name, lifetime)
        return AzureBlobDataReference(BaseLocation=minter.base_location, RelativeLocation=ref.path,
                                      SasBlobToken=token)

    def _submit(self, run: Run, ref: BlobRef) -> Run:
        target = self.settings.target(run.target)
        bes = self.s.bes(target)
        models = self.settings.models_container
        model_ref = BlobRef(models, f"{run.id}/model.ilearner")
        eval_ref = BlobRef(models, f"{run.id}/evaluation.csv")
        request = BatchJobRequest(
            Inputs={"input1": self._data_reference(ref, write=False)},
            Outputs={self.settings.model_output: self._data_reference(model_ref, write=True),
                     self.settings.evaluation_output: self._data_reference(eval_ref, write=True)},
            GlobalParameters=dict(self.settings.bes_global_parameters))
        try:
            if run.job_id is None:
                run.job_id = bes.submit(request)
                run.status, run.submitted_at = "Submitted", now_iso()
                run.model_path, run.evaluation_path = model_ref.path, eval_ref.path
                self._save(run)
            bes.start(run.job_id)
        except StudioApiError as exc:
            if exc.transient:
                raise  # past the retry budget: let the platform retry the trigger
            run.status, run.error = "Failed", f"BES refused the job: {_error_text(exc)}"
            run.claimed_by, run.claimed_until = None, 0.0
            self._save(run)
            self.s.events.publish("JobFailed", run.data_path or run.id, {"runId": run.id, "jobId": run.job_id,
                                                                         "error": run.error})
            return run
        run.status = "Running"
        run.claimed_by, run.claimed_until = None, 0.0
        self._save(run)
        log.info("BES job %s started for %s", run.job_id, ref.path)
        self.s.events.publish("JobSubmitted", ref.path, {"runId": run.id, "jobId": run.job_id,
                                                         "target": run.target, "endpoints": run.endpoints,
                                                         "model": run.model_path})
        return run

    # ---- a model landed -------------------------------------------------------------------------------------------
    def on_model_blob(self, ref: BlobRef, trigger: str = "blob") -> PromoteResult | None:
        """A `.ilearner` landed in the models container: promote its run, or deploy a hand-dropped model."""
        if not ref.name.lower().endswith(".ilearner"):
            return None
        first = ref.name.split("/", 1)[0]
        run = self.s.ledger.get_run(first) if "/" in ref.name else None
        if run is not None and run.kind == "bes":
            return self.promote(run)
        try:
            props = self.s.storage.properties(ref)
        except ResourceNotFoundError:
            return None
        run_id = run_id_for(ref.path, str(props.etag))
        with context(run=run_id):
            try:
                if props.size == 0:
                    raise DataRejected("EmptyModel", "the model file is empty")
                route = self.route(ref.name)
                if route.tenant is not None:
                    self._require_endpoint(route.target, route.tenant)
            except DataRejected as exc:
                self._reject_model(ref, run_id, exc.code, exc.message)
                return PromoteResult(run_id, "Rejected", reason=exc.message)
            landed = props.last_modified.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            run, _ = self.s.ledger.create_run(Run(
                id=run_id, kind="manual", status="Finished", target=route.target.name, endpoints=route.endpoints,
                data_time=landed, model_path=ref.path, trigger=trigger, finished_at=now_iso()))
            sibling = BlobRef(ref.container, ref.name.rsplit("/", 1)[0] + "/evaluation.csv") if "/" in ref.name \
                else None
            if sibling is not None and not run.metrics and self.s.storage.exists(sibling):
                run.metrics, run.evaluation_path = self.s.storage.read_evaluation(sibling), sibling.path
                self._save(run)
            result = self.promote(run, force=not run.metrics)
            if result.endpoints and all(r.model_refused for r in result.endpoints):
                # Every endpoint refused to serve it: the file is bad. Keep it in rejected/ with the reason.
                reasons = "; ".join(sorted({r.reason or "unknown" for r in result.endpoints}))
                result.status, result.reason = "Rejected", f"no endpoint could serve the model: {reasons}"
                self._reject_model(ref, run.id, "ModelNotServable", result.reason)
            return result

    def _reject_model(self, ref: BlobRef, run_id: str, code: str, message: str) -> None:
        moved = self.s.storage.reject(ref, {"code": code, "message": message, "runId": run_id})
        self.s.events.publish("ModelRejected", ref.path, {"runId": run_id, "model": ref.path, "code": code,
                                                          "reason": message, "movedTo": moved.path})

    # ---- promote --------------------------------------------------------------------------------------------------
    def _wait_for_job(self, run: Run, target: Target) -> JobStatus:
        bes = self.s.bes(target)
        deadline = time.monotonic() + self.settings.job_wait_seconds
        assert run.job_id
        while True:
            status = bes.get(run.job_id)
            if status.terminal or time.monotonic() >= deadline:
                return status
            time.sleep(self.settings.job_poll_seconds)

    def promote(self, run: Run, force: bool = False) -> PromoteResult:
        """Gate, then deploy the run's model to every endpoint it routes to (concurrently, bounded)."""
        with context(run=run.id):
            target = self.settings.target(run.target)
            source: ModelSource
            if run.kind == "bes":
                if run.job_id is None:
                    return PromoteResult(run.id, "Pending", reason="the job has not been submitted yet")
                if run.status in ("Failed", "Cancelled", "Rejected"):
                    return PromoteResult(run.id, "Failed", reason=run.error)
                status = self._wait_for_job(run, target)
                if status.StatusCode in ("Failed", "Cancelled"):
                    self._job_ended(run, status)
                    return PromoteResult(run.id, "Failed", reason=run.error)
                if status.StatusCode != "Finished":
                    return PromoteResult(run.id, "Pending", reason=f"the job is {status.StatusCode}")
                self._job_finished(run, status)
                model = (status.Results or {}).get(self.settings.model_output)
                results = None
                if model is not None and model.BaseLocation and model.SasBlobToken:
                    results = ResourceLocation(BaseLocation=model.BaseLocation,
                                               RelativeLocation=model.RelativeLocation,
                                               SasBlobToken=model.SasBlobToken)
                source = ModelSource(self.s, results.RelativeLocation if results else run.model_path or "",
                                     base=results.BaseLocation if results else None, target=target,
                                     job_id=run.job_id, results_location=results)
            else:
                source = ModelSource(self.s, run.model_path or "")
            metric = run.metrics.get(self.settings.gate_metric)
            if not force:
                reason = self._gate(metric)
                if reason is not None:
                    return self._reject_run(run, target, reason, metric)
            endpoints = self._resolve_endpoints(target, run.endpoints)
            results_list = self._deploy_many(target, endpoints, source, run, force, run.trigger)
            if not run.promoted:
                run.promoted = True
                self._save(run)
            return PromoteResult(run.id, "Done", results_list, sas_refreshed_by_get=source.refreshed_by_get,
                                 sas_minted=source.minted)

    def _gate(self, metric: float | None) -> str | None:
        name = self.settings.gate_metric
        if metric is None:
            return f"the evaluation has no '{name}' metric"
        ok = metric >= self.settings.gate_minimum if self.settings.higher_is_better else \
            metric <= self.settings.gate_minimum
        if not ok:
            return f"{name} {metric:.4f} misses the minimum {self.settings.gate_minimum}"
        return None

    def _reject_run(self, run: Run, target: Target, reason: str, metric: float | None) -> PromoteResult:
        if not run.promoted:
            run.promoted, run.error = True, f"ModelRejected: {reason}"
            self._save(run)
            self.s.events.publish("ModelRejected", run.model_path or run.id, {
                "runId": run.id, "model": run.model_path, "code": "BelowGate", "metric": self.settings.gate_metric,
                "value": metric, "minimum": self.settings.gate_minimum, "reason": reason, "endpoints": run.endpoints})
            for ep in run.endpoints if run.endpoints != ["*"] else []:
                self.s.ledger.add_deployment(Deployment(
                    id=f"run-{run.id}", target=target.name, endpoint=ep, outcome="Rejected", run_id=run.id,
                    model_path=run.model_path, data_time=run.data_time, metric=metric, reason=reason,
                    trigger=run.trigger))
        return PromoteResult(run.id, "Rejected", reason=reason)

    def _job_finished(self, run: Run, status: JobStatus) -> None:
        if run.status == "Finished" and run.metrics:
            return
        evaluation = (status.Results or {}).get(self.settings.evaluation_output)
        model = (status.Results or {}).get(self.settings.model_output)
        if model is not None:
            run.model_path = model.RelativeLocation
        if evaluation is not None:
            run.evaluation_path = evaluation.RelativeLocation
            try:
                run.metrics = self.s.storage.read_evaluation(BlobRef.parse(evaluation.RelativeLocation))
            except (ValueError, ResourceNotFoundError) as exc:
                log.warning("could not read the evaluation of run %s: %s", run.id, exc)
        run.status, run.finished_at = "Finished", now_iso()
        self._save(run)
        self.s.events.publish("JobFinished", run.model_path or run.id, {
            "runId": run.id, "jobId": run.job_id, "model": run.model_path, "evaluation": run.evaluation_path,
            "metrics": run.metrics})

    def _job_ended(self, run: Run, status: JobStatus) -> None:
        if run.status in ("Failed", "Cancelled"):
            return
        run.status = "Failed" if status.StatusCode == "Failed" else "Cancelled"
        run.error, run.finished_at = status.Details or f"the job was {status.StatusCode}", now_iso()
        self._save(run)
        self.s.events.publish("JobFailed", run.data_path or run.id, {"runId": run.id, "jobId": run.job_id,
                                                                     "status": status.StatusCode,
                                                                     "details": run.error})

    # ---- deploy endpoints ---------------------------------------------------------------------------------------
    def _acquire(self, target: Target, endpoint: str, owner: str) -> Current:
        return _wait_for_lease(lambda: self.s.ledger.acquire(target.name, endpoint, owner,
                                                             self.settings.lease_seconds))

    def _draft(self, target: Target, endpoint: str, source: ModelSource, run: Run | None, operation: str,
               trigger: str, dep_id: str | None = None) -> Deployment:
        dep_id = dep_id or (f"run-{run.id}" if run is not None and operation == "promote" else new_operation_id())
        return Deployment(
            id=dep_id, target=target.name, endpoint=endpoint, operation=operation,  # type: ignore[arg-type]
            run_id=run.id if run else None, model_base=source.base, model_path=source.relative,
            data_time=run.data_time if run else now_iso(), metric=run.metrics.get(self.settings.gate_metric)
            if run else None, trigger=trigger)

    def _begin_alone(self, book: LedgerDeployments, draft: Deployment, owner: str) -> Begun | EndpointResult:
        """Begin one endpoint (waiting for a held lease); an EndpointResult when there is nothing to do: the lease
        stayed busy, or this attempt finished before (a redelivery)."""
        try:
            begun = _wait_for_lease(lambda: book.begin(draft, owner, self.settings.lease_seconds))
        except LeaseBusy:
            return EndpointResult(draft.endpoint, "Pending", "another deployment holds the endpoint", draft.id)
        if begun.lease is None:
            return EndpointResult(draft.endpoint, begun.dep.outcome, begun.dep.reason, begun.dep.id)
        return begun

    def _work(self, target: Target, source: ModelSource, run: Run | None, force: bool, begun: Begun) -> Deployment:
        """The Studio side of one endpoint's deployment (under its lease); returns the attempt with its outcome."""
        started = time.monotonic()
        dep = begun.dep
        assert begun.lease is not None
        try:
            outcome, reason = self._deploy_locked(target, dep.endpoint, source, run, dep.operation, force, dep,
                                                  begun.lease)
        except Exception as exc:
            outcome, reason = "Failed", f"unexpected error: {type(exc).__name__}"
            log.exception("deployment %s to %s failed", dep.id, dep.endpoint)
        dep.outcome, dep.reason = outcome, reason  # type: ignore[assignment]
        dep.duration_ms = int((time.monotonic() - started) * 1000)
        return dep

    def _deploy(self, target: Target, endpoint: str, source: ModelSource, run: Run | None, operation: str,
                force: bool, trigger: str, dep_id: str | None = None) -> EndpointResult:
        """Deploy to one endpoint: lease + attempt, PATCH, verify (roll back on failure), outcome + pointer."""
        if endpoint == self.s.default_endpoint(target):
            return EndpointResult(endpoint, "Refused", "the default endpoint is never patched")
        owner = uuid.uuid4().hex
        book = LedgerDeployments(self.s.ledger)
        begun = self._begin_alone(book, self._draft(target, endpoint, source, run, operation, trigger, dep_id),
                                  owner)
        if isinstance(begun, EndpointResult):
            return begun
        dep = self._work(target, source, run, force, begun)
        try:
            assert begun.lease is not None
            book.finish(dep, begun.lease, owner)
        except ResourceModifiedError:
            log.warning("the lease on %s was taken over while deploying %s", endpoint, dep.id)
        return EndpointResult(endpoint, dep.outcome, dep.reason, dep.id)

    def _deploy_many(self, target: Target, endpoints: list[str], source: ModelSource, run: Run, force: bool,
                     trigger: str) -> list[EndpointResult]:
        """Deploy one model to many endpoints: the same steps as `_deploy` per endpoint, with at most
        RETRAIN_PATCH_CONCURRENCY endpoints in flight, and the ledger written in batches (leases and attempts of
        up to 50 endpoints per transaction, outcomes likewise) while the Studio calls run."""
        default = self.s.default_endpoint(target)
        results: dict[str, EndpointResult] = {}
        todo = []
        for ep in dict.fromkeys(endpoints):
            if ep == default:
                results[ep] = EndpointResult(ep, "Refused", "the default endpoint is never patched")
            else:
                todo.append(ep)
        todo.sort()  # each batch's `current` rows are then one range query (no read of the target's other rows)
        owner = uuid.uuid4().hex
        book = LedgerDeployments(self.s.ledger)
        workers = max(1, min(self.settings.patch_concurrency, len(todo)))
        finished: queue.Queue[tuple[Deployment, Current] | None] = queue.Queue()

        def work(begun: Begun) -> None:
            try:
                finished.put((self._work(target, source, run, force, begun), begun.lease))  # type: ignore[arg-type]
            except BaseException:
                finished.put(None)
                raise

        in_flight = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout") as pool:
            for i in range(0, len(todo), BATCH_ENDPOINTS):
                chunk = todo[i:i + BATCH_ENDPOINTS]
                drafts = [self._draft(target, ep, source, run, "promote", trigger) for ep in chunk]
                if len(drafts) > 1:
                    currents = self.s.ledger.currents(target.name, chunk[0], chunk[-1])
                    began, alone = book.begin_many(drafts, owner, self.settings.lease_seconds, currents)
                else:
                    began, alone = [], drafts
                for draft in alone:
                    one = self._begin_alone(book, draft, owner)
                    if isinstance(one, EndpointResult):
                        results[draft.endpoint] = one
                    else:
                        began.append(one)
                for one in began:
                    pool.submit(work, one)
                    in_flight += 1
            batch: list[tuple[Deployment, Current]] = []
            oldest = 0.0
            for left in range(in_flight - 1, -1, -1):
                item = finished.get()
                if item is not None:
                    if not batch:
                        oldest = time.monotonic()
                    batch.append(item)
                    results[item[0].endpoint] = EndpointResult(item[0].endpoint, item[0].outcome, item[0].reason,
                                                               item[0].id)
                # Outcomes go in full batches (fewer, larger transactions), or after a second, or at the end.
                if batch and (len(batch) >= BATCH_ENDPOINTS or left == 0 or time.monotonic() - oldest > 1.0):
                    for lost in book.finish_many(batch, owner):
                        log.warning("the lease on %s was taken over while deploying %s", lost.endpoint, lost.id)
                    batch = []
        return [results[ep] for ep in dict.fromkeys(endpoints) if ep in results]

    def _deploy_locked(self, target: Target, endpoint: str, source: ModelSource, run: Run | None, operation: str,
                       force: bool, dep: Deployment, cur: Current) -> tuple[str, str | None]:
        subject = f"{target.name}/{endpoint}"
        metric = dep.metric
        if operation == "promote" and run is not None and cur.data_time and run.data_time < cur.data_time:
            return "Superseded", f"the endpoint serves a model from newer data ({cur.data_time})"
        need = self.settings.gate_min_improvement
        if operation == "promote" and not force and need is not None and metric is not None and \
                cur.metric is not None:
            better = metric >= cur.metric + need if self.settings.higher_is_better else metric <= cur.metric - need
            if not better:
                reason = (f"{self.settings.gate_metric} {metric:.4f} does not improve on the serving model's "
                          f"{cur.metric:.4f} by {need}")
                self.s.events.publish("ModelRejected", subject, {"runId": dep.run_id, "endpoint": endpoint,
                                                                 "model": dep.model_path, "code": "NoImprovement",
                                                                 "reason": reason})
                return "Rejected", reason
        mgmt = self.s.management(target)
        try:
            before = mgmt.get_endpoint(endpoint)
            mgmt.patch_model(endpoint, target.resource_name, source.location())
        except (StudioApiError, TransportError, Refused) as exc:
            refused = isinstance(exc, StudioApiError) and exc.status == 400
            reason = f"{MODEL_REFUSED}: {_error_text(exc)}" if refused else f"PATCH failed: {_error_text(exc)}"
            self.s.events.publish("EndpointUpdateFailed", subject, {"runId": dep.run_id, "endpoint": endpoint,
                                                                    "model": dep.model_path, "reason": reason})
            return "Failed", reason
        problem = self._verify(target, endpoint, source.relative, run)
        if problem is not None:
            rolled = self._restore(target, endpoint, before)
            self.s.events.publish("EndpointUpdateFailed", subject, {
                "runId": dep.run_id, "endpoint": endpoint, "model": dep.model_path, "reason": problem})
            self.s.events.publish("EndpointRolledBack", subject, {
                "runId": dep.run_id, "endpoint": endpoint, "failedModel": dep.model_path,
                "restoredModel": cur.model_path, "restored": rolled is None, "reason": problem})
            return "RolledBack", problem + ("" if rolled is None else f"; the rollback also failed: {rolled}")
        cur.deployment_id, cur.run_id = dep.id, dep.run_id
        cur.model_base, cur.model_path, cur.data_time, cur.metric = dep.model_base, dep.model_path, dep.data_time, \
            metric
        self.s.events.publish("EndpointUpdated", subject, {
            "runId": dep.run_id, "endpoint": endpoint, "target": target.name, "model": dep.model_path,
            "metric": metric, "operation": operation, "deploymentId": dep.id})
        return "Deployed", None

    def _verify(self, target: Target, endpoint: str, relative: str, run: Run | None) -> str | None:
        """None when the endpoint shows the new model and a smoke request scores; else what is wrong."""
        if self.settings.verify_delay_seconds:
            time.sleep(self.settings.verify_delay_seconds)
        try:
            ep = self.s.management(target).get_endpoint(endpoint)
        except (StudioApiError, TransportError) as exc:
            return f"verification GET failed: {_error_text(exc)}"
        res = ep.resource(target.resource_name)
        shown = (res.Location or {}).get("RelativeLocation") if res else None
        if shown != relative:
            return f"the endpoint shows model {shown!r}, not {relative!r}"
        row = (run.smoke_row if run else None) or self.settings.smoke_row or self._last_smoke_row(target)
        if not row:
            return None
        if not ep.ApiLocation or not ep.PrimaryKey or not self.settings.rrs_host_allowed(ep.ApiLocation):
            return "the endpoint has no usable ApiLocation for a smoke request"
        try:
            scored = self.s.scoring(ep.ApiLocation, ep.PrimaryKey).score([row])
        except (StudioApiError, TransportError) as exc:
            return f"the smoke scoring request failed: {_error_text(exc)}"
        if len(scored) != 1:
            return "the smoke scoring request returned no row"
        return None

    def _last_smoke_row(self, target: Target) -> dict[str, str] | None:
        for run in self.s.ledger.list_runs(("Finished", "Running"), limit=20):
            if run.target == target.name and run.smoke_row:
                return run.smoke_row
        return None

    def _restore(self, target: Target, endpoint: str, before: Endpoint) -> str | None:
        """Put the model the endpoint had back; None on success, else why not."""
        res = before.resource(target.resource_name)
        loc = res.Location if res else None
        if not loc or not loc.get("RelativeLocation"):
            return "the endpoint had no model to go back to"
        try:
            location = self._location_for(target, str(loc.get("BaseLocation") or ""), str(loc["RelativeLocation"]),
                                          loc.get("SasBlobToken"))
            if location is None:
                self.s.management(target).refresh(endpoint, overwrite_resources=True)
            else:
                self.s.management(target).patch_model(endpoint, target.resource_name, location)
        except (StudioApiError, TransportError, Refused) as exc:
            return _error_text(exc)
        return None

    def _location_for(self, target: Target, base: str, relative: str,
                      token: object = None) -> ResourceLocation | None:
        """A PATCH location for a model: a fresh token when the blob is ours, its own token while it lasts,
        else None (go back through refresh, the documented way to the default endpoint's model)."""
        if self.s.minter.owns(base):
            return self.s.minter.location(relative, self.s.sas_lifetime)
        if isinstance(token, str) and not needs_refresh(token, timedelta(minutes=1)):
            return ResourceLocation(BaseLocation=base, RelativeLocation=relative, SasBlobToken=token)
        return None

    # ---- operator actions -----------------------------------------------------------------------------------------
    def deploy_model(self, target_name: str, endpoint: str, model_path: str, force: bool = True,
                     trigger: str = "http") -> EndpointResult:
        """Patch one endpoint with a given `.ilearner` (a path in this app's storage)."""
        target = self._target(target_name)
        ref = self._model_ref(model_path)
        self._require_known_endpoint(target, endpoint)
        metric = None
        sibling = BlobRef(ref.container, ref.name.rsplit("/", 1)[0] + "/evaluation.csv") if "/" in ref.name else None
        if sibling is not None and self.s.storage.exists(sibling):
            metric = self.s.storage.read_evaluation(sibling).get(self.settings.gate_metric)
        if not force:
            reason = self._gate(metric)
            if reason is not None:
                raise Refused(reason, "ModelRejected", conflict=True)
        run = Run(id=f"manual-{uuid.uuid4().hex[:12]}", kind="manual", status="Finished", target=target.name,
                  endpoints=[endpoint], model_path=ref.path, metrics={self.settings.gate_metric: metric}
                  if metric is not None else {}, trigger=trigger)
        return self._deploy(target, endpoint, ModelSource(self.s, ref.path), run=run, operation="patch",
                            force=True, trigger=trigger)

    def _model_ref(self, model_path: str) -> BlobRef:
        try:
            ref = BlobRef.parse(model_path)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        if ref.container != self.settings.models_container:
            raise Refused(f"models are taken only from the '{self.settings.models_container}' container",
                          "OutsideContainer")
        if not ref.name.lower().endswith(".ilearner") or ".." in ref.name.split("/"):
            raise Refused("a model must be a .ilearner blob")
        if not self.s.storage.exists(ref):
            raise NotFound(f"{ref.path} does not exist")
        return ref

    def _target(self, name: str | None) -> Target:
        if name is None:
            return self.settings.targets[0]
        try:
            return self.settings.target(name)
        except KeyError:
            raise NotFound(f"no target named '{name}'") from None

    def _require_known_endpoint(self, target: Target, endpoint: str) -> Endpoint:
        if not ENDPOINT_NAME.match(endpoint):
            raise Refused(f"'{endpoint}' is not a valid endpoint name", "InvalidEndpointName")
        if endpoint == self.s.default_endpoint(target):
            raise Refused("the default endpoint is never patched: it follows the experiment", "DefaultEndpoint",
                          conflict=True)
        try:
            return self.s.management(target).get_endpoint(endpoint)
        except StudioApiError as exc:
            if exc.status == 404:
                raise NotFound(f"endpoint '{endpoint}' does not exist on target '{target.name}'") from None
            raise

    def rollback(self, target_name: str | None, endpoint: str, to: str | None = None,
                 trigger: str = "http") -> EndpointResult:
        """Go back to the previous good model of an endpoint, or to a named deployment."""
        target = self._target(target_name)
        self._require_known_endpoint(target, endpoint)
        history = self.s.ledger.history(target.name, endpoint)
        cur = self.s.ledger.current(target.name, endpoint)
        good = [d for d in history if d.outcome in ("Deployed", "Created") and d.model_path]
        if to is not None:
            chosen = next((d for d in good if d.id == to), None)
            if chosen is None:
                raise NotFound(f"no successful deployment '{to}' on endpoint '{endpoint}'")
        else:
            serving = cur.deployment_id if cur else None
            older = [d for d in good if d.id != serving and (cur is None or d.model_path != cur.model_path)]
            if not older:
                raise Refused(f"endpoint '{endpoint}' has no earlier model to roll back to", "NothingToRollBack",
                              conflict=True)
            chosen = older[0]
        assert chosen.model_path is not None
        location = self._location_for(target, chosen.model_base or "", chosen.model_path)
        run = Run(id=chosen.run_id or f"rollback-{chosen.id}", kind="manual", status="Finished", target=target.name,
                  endpoints=[endpoint], model_path=chosen.model_path, data_time=chosen.data_time or now_iso(),
                  metrics={self.settings.gate_metric: chosen.metric} if chosen.metric is not None else {},
                  trigger=trigger)
        if location is None:  # the creation model of an endpoint: refresh from the default endpoint
            return self._refresh_back(target, endpoint, chosen, trigger)
        source = ModelSource(self.s, chosen.model_path, base=chosen.model_base)
        result = self._deploy(target, endpoint, source, run=run, operation="rollback", force=True, trigger=trigger)
        if result.outcome == "Deployed":
            self.s.events.publish("EndpointRolledBack", f"{target.name}/{endpoint}", {
                "endpoint": endpoint, "restoredModel": chosen.model_path, "toDeployment": chosen.id,
                "deploymentId": result.deployment_id})
        return result

    def _refresh_back(self, target: Target, endpoint: str, chosen: Deployment, trigger: str) -> EndpointResult:
        owner = uuid.uuid4().hex
        cur = self._acquire(target, endpoint, owner)
        dep = Deployment(id=new_operation_id(), target=target.name, endpoint=endpoint, operation="rollback",
                         model_base=chosen.model_base, model_path=chosen.model_path, trigger=trigger)
        try:
            self.s.management(target).refresh(endpoint, overwrite_resources=True)
            dep.outcome = "Deployed"
            cur.deployment_id, cur.run_id, cur.model_base, cur.model_path = dep.id, None, dep.model_base, \
                dep.model_path
            cur.data_time, cur.metric = None, None
        except (StudioApiError, TransportError) as exc:
            dep.outcome, dep.reason = "Failed", _error_text(exc)
        finally:
            self.s.ledger.release(cur, owner)
        self.s.ledger.save_deployment(dep)
        if dep.outcome == "Deployed":
            self.s.events.publish("EndpointRolledBack", f"{target.name}/{endpoint}", {
                "endpoint": endpoint, "restoredModel": chosen.model_path, "toDeployment": chosen.id,
                "deploymentId": dep.id})
        return EndpointResult(endpoint, dep.outcome, dep.reason, dep.id)

    def add_endpoint(self, name: str, description: str = "", target_name: str | None = None,
                     throttle_level: str = "Low", max_concurrent_calls: int | None = None) -> dict[str, Any]:
        """Create a scoring endpoint; its history starts with the model it was created with."""
        target = self._target(target_name)
        if not ENDPOINT_NAME.match(name):
            raise Refused("endpoint names have at most 24 characters: lower-case letters, digits and hyphens, "
                          "not at the start or end", "InvalidEndpointName")
        mgmt = self.s.management(target)
        ep = mgmt.create_endpoint(name, description, throttle_level, max_concurrent_calls)
        res = ep.resource(target.resource_name)
        loc = (res.Location or {}) if res else {}
        dep = Deployment(id=new_operation_id(), target=target.name, endpoint=name, operation="create",
                         outcome="Created", model_base=loc.get("BaseLocation"), model_path=loc.get("RelativeLocation"),
                         trigger="http")
        self.s.ledger.add_deployment(dep)
        owner = uuid.uuid4().hex
        cur = self._acquire(target, name, owner)
        if cur.deployment_id is None:
            cur.deployment_id, cur.model_base, cur.model_path = dep.id, dep.model_base, dep.model_path
        self.s.ledger.release(cur, owner)
        return self.endpoint_view(target.name, name, ep)

    def endpoint_view(self, target_name: str | None, name: str, ep: Endpoint | None = None) -> dict[str, Any]:
        """What an operator sees of an endpoint: the service's view (no keys), the ledger's current, history."""
        target = self._target(target_name)
        if ep is None:
            try:
                ep = self.s.management(target).get_endpoint(name)
            except StudioApiError as exc:
                if exc.status == 404:
                    raise NotFound(f"endpoint '{name}' does not exist on target '{target.name}'") from None
                raise
        res = ep.resource(target.resource_name)
        loc = (res.Location or {}) if res else {}
        cur = self.s.ledger.current(target.name, name)
        return {
            "name": ep.Name, "target": target.name, "description": ep.Description,
            "apiLocation": ep.ApiLocation, "throttleLevel": ep.ThrottleLevel,
            "maxConcurrentCalls": ep.MaxConcurrentCalls, "isDefault": ep.Name == self.s.default_endpoint(target),
            "model": {"baseLocation": loc.get("BaseLocation"), "relativeLocation": loc.get("RelativeLocation")},
            "current": cur.model_dump(exclude={"lease_owner", "lease_until"}) if cur else None,
            "history": [d.model_dump() for d in self.s.ledger.history(target.name, name)],
        }

    def list_endpoints(self, target_name: str | None = None) -> list[dict[str, Any]]:
        targets = [self._target(target_name)] if target_name else self.settings.targets
        out = []
        for target in targets:
            default = self.s.default_endpoint(target)
            for ep in self.s.management(target).list_endpoints():
                cur = self.s.ledger.current(target.name, ep.Name)
                res = ep.resource(target.resource_name)
                out.append({"name": ep.Name, "target": target.name, "isDefault": ep.Name == default,
                            "model": (res.Location or {}).get("RelativeLocation") if res else None,
                            "deploymentId": cur.deployment_id if cur else None,
                            "runId": cur.run_id if cur else None})
        return out

    def retrain_from_blob(self, path: str, trigger: str = "http") -> Run | None:
        ref = self._data_ref(path)
        return self.accept_training_data(ref, trigger=trigger)

    def _data_ref(self, path: str) -> BlobRef:
        try:
            ref = BlobRef.parse(path)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        if ref.container != self.settings.data_container or ".." in ref.name.split("/"):
            raise Refused(f"training data is taken only from the '{self.settings.data_container}' container",
                          "OutsideContainer")
        if not self.s.storage.exists(ref):
            raise NotFound(f"{ref.path} does not exist")
        return ref

    def retrain_from_csv(self, name: str, data: bytes, trigger: str = "http") -> Run | None:
        """Store an uploaded CSV in the data container, then accept it like a landed file."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,200}\.csv", name) or ".." in name:
            raise Refused("name must be a relative path ending in .csv (letters, digits, . _ - /)")
        ref = BlobRef(self.settings.data_container, name)
        self.s.storage.write_bytes(ref, data, "text/csv")
        return self.accept_training_data(ref, trigger=trigger)

    def get_run(self, run_id: str) -> Run:
        run = self.s.ledger.get_run(run_id) if re.fullmatch(r"[A-Za-z0-9_-]{1,128}", run_id) else None
        if run is None:
            raise NotFound(f"no run '{run_id}'")
        return run

    def list_runs(self, statuses: tuple[str, ...] | None = None, limit: int = 50) -> list[Run]:
        known = set(RUN_STATUSES)
        bad = [s for s in statuses or () if s not in known]
        if bad:
            raise Refused(f"unknown run status {', '.join(bad)}; use {', '.join(RUN_STATUSES)}", "InvalidRequest")
        return self.s.ledger.list_runs(statuses, limit)

    def health(self) -> dict[str, Any]:
        """Can the app reach what it needs? Storage (the ledger), and each target's management API (one try)."""
        checks: dict[str, dict[str, Any]] = {}
        started = time.monotonic()
        try:
            self.s.ledger.list_runs(("Running",), limit=1)
            checks["storage"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            checks["storage"] = {"ok": False, "error": type(exc).__name__}
        for target in self.settings.targets:
            try:
                service = self.s.management(target).get_service(max_attempts=1)
                checks[f"studio:{target.name}"] = {"ok": True, "service": service.Name}
            except (StudioApiError, TransportError) as exc:
                checks[f"studio:{target.name}"] = {"ok": False, "error": _error_text(exc)}
        ok = all(c["ok"] for c in checks.values())
        return {"status": "ok" if ok else "degraded", "checks": checks,
                "eventGrid": "configured" if self.settings.eventgrid_endpoint else "not configured",
                "targets": [t.name for t in self.settings.targets],
                "durationMs": int((time.monotonic() - started) * 1000)}

    # ---- reconcile ----------------------------------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Finish what triggers missed or a crash left: poll jobs, promote finished runs, fail stuck ones."""
        summary = {"checked": 0, "promoted": 0, "failed": 0, "started": 0, "cancelled": 0, "resubmitted": 0}
        deadline = timedelta(minutes=self.settings.job_deadline_minutes)
        now = datetime.now(UTC)
        for run in self.s.ledger.list_runs(("Accepted", "Submitted", "Running", "Finished"), limit=500):
            if run.status == "Finished" and (run.promoted or run.kind != "bes"):
                continue
            summary["checked"] += 1
            with context(run=run.id):
                try:
                    self._reconcile_run(run, now, deadline, summary)
                except (StudioApiError, TransportError) as exc:
                    log.warning("reconcile of run %s: %s", run.id, _error_text(exc))
        return summary

    def _reconcile_run(self, run: Run, now: datetime, deadline: timedelta, summary: dict[str, int]) -> None:
        age = now - datetime.fromisoformat((run.submitted_at or run.created_at).replace("Z", "+00:00"))
        if run.status == "Accepted":
            if run.claimed_until < time.time() and run.data_path and age > timedelta(minutes=2):
                self.accept_training_data(BlobRef.parse(run.data_path), trigger="reconcile")
                summary["resubmitted"] += 1
            return
        target = self.settings.target(run.target)
        bes = self.s.bes(target)
        assert run.job_id is not None
        status = bes.get(run.job_id)
        if status.StatusCode == "NotStarted" and run.status == "Submitted":
            bes.start(run.job_id)
            run.status = "Running"
            self._save(run)
            summary["started"] += 1
            return
        if status.StatusCode in ("NotStarted", "Running"):
            if age > deadline:
                bes.cancel(run.job_id)
                run.status, run.error = "Failed", f"the job ran past the deadline of {deadline}"
                run.finished_at = now_iso()
                self._save(run)
                self.s.events.publish("JobFailed", run.data_path or run.id, {
                    "runId": run.id, "jobId": run.job_id, "status": "DeadlineExceeded", "details": run.error})
                summary["cancelled"] += 1
            return
        if status.StatusCode in ("Failed", "Cancelled"):
            self._job_ended(run, status)
            summary["failed"] += 1
            return
        result = self.promote(run)
        if result.status == "Done":
            summary["promoted"] += 1
