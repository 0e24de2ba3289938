"""A fake Studio: one service that trains (jobs that write a model and its evaluation into a `FakeBlobStore`) and
serves (endpoints that serve a model path), behind the training and serving ports. Tests steer it: the metrics the
next job reaches, jobs that fail or stay running, models that cannot load, verifications that cannot be made
(throttling), and fault rules that make any operation raise a `FakeServiceError` the next N times."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from shared.errors import AlreadyExists, ServiceError
from shared.ports.blobs import BlobStore, SasPurpose
from shared.ports.services import TargetKind
from shared.ports.serving import Answers, EndpointInfo, Keepalive, ModelRef, Observed, ServingTarget, Verdict
from shared.ports.training import JobPhase, JobState, SubmittedJob, TrainingService
from shared.records import BlobRef
from shared.settings import Target

STUDIO_BASE = "https://studio.example/models/"


class FakeServiceError(ServiceError):
    def __init__(self, message: str, transient: bool = False, input_refused: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.transient, self.input_refused, self.status = transient, input_refused, status
        self.code, self.message = ("Throttled" if transient else "Refused"), message


@dataclass
class FakeJob:
    run_id: str
    data: BlobRef
    model: BlobRef
    evaluation: BlobRef
    phase: JobPhase = "NotStarted"
    details: str | None = None


@dataclass
class FakeEndpoint:
    name: str
    model_path: str | None
    model_base: str | None = STUDIO_BASE
    history: list[str | None] = field(default_factory=list)  # every model it was given, in order


class FakeStudio:
    def __init__(self, storage: BlobStore, models_container: str = "models") -> None:
        self.storage = storage
        self.models_container = models_container
        self.endpoints: dict[str, FakeEndpoint] = {"default": FakeEndpoint("default", "experiment/model.ilearner")}
        self.protected = "default"
        self.jobs: dict[str, FakeJob] = {}
        self.metrics: dict[str, float] = {"AUC": 0.85, "Accuracy": 0.81}
        self.finish_on_start = True  # a started job is Finished the next time it is asked about
        self.broken_models: set[str] = set()  # model paths that cannot load
        self.verdicts: list[Verdict] = []  # the next verifications' verdicts (else: OK unless the model is broken)
        self.switching: dict[str, int] = {}  # per endpoint: scheduled looks that find it not switched yet
        self.faults: dict[str, list[FakeServiceError]] = {}
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # ---- steering -----------------------------------------------------------------------------------------
    def fail(self, operation: str, times: int = 1, transient: bool = True, input_refused: bool = False) -> None:
        """The next `times` calls of `operation` raise (e.g. "submit", "put_in_service", "state")."""
        error = FakeServiceError(f"{operation} failed (fault rule)", transient, input_refused,
                                 400 if input_refused else 503 if transient else 409)
        self.faults.setdefault(operation, []).extend([error] * times)

    def add_endpoint(self, name: str, model_path: str | None = "experiment/model.ilearner") -> None:
        self.endpoints[name] = FakeEndpoint(name, model_path, history=[model_path])

    def finish(self, job_id: str, phase: JobPhase = "Finished", details: str | None = None) -> None:
        """End a job: Finished writes its model and evaluation (with `metrics`)."""
        with self._lock:
            job = self.jobs[job_id]
            if phase == "Finished":
                metrics = ",".join(self.metrics) + "\n" + ",".join(str(v) for v in self.metrics.values()) + "\n"
                put = getattr(self.storage, "put", None)
                assert put is not None, "the fake studio writes outputs into a FakeBlobStore"
                put(job.model, f"model of {job.run_id}".encode())
                put(job.evaluation, metrics.encode())
            job.phase, job.details = phase, details

    def _call(self, operation: str, subject: str) -> None:
        with self._lock:
            self.calls.append((operation, subject))
            pending = self.faults.get(operation)
            if pending:
                raise pending.pop(0)

    # ---- training -------------------------------------------------------------------------------------------
    def submit(self, run_id: str, data: BlobRef) -> SubmittedJob:
        self._call("submit", data.path)
        self.storage.grant(data, SasPurpose.JOB_INPUT)
        with self._lock:
            job_id = f"job-{next(self._ids)}"
            model = BlobRef(self.models_container, f"{run_id}/model.ilearner")
            evaluation = BlobRef(self.models_container, f"{run_id}/evaluation.csv")
            for output in (model, evaluation):
                self.storage.grant(output, SasPurpose.JOB_OUTPUT)
            self.jobs[job_id] = FakeJob(run_id, data, model, evaluation)
            return SubmittedJob(job_id, model.path, evaluation.path)

    def start(self, job_id: str) -> None:
        self._call("start", job_id)
        with self._lock:
            if self.jobs[job_id].phase == "NotStarted":
                self.jobs[job_id].phase = "Running"

    def state(self, job_id: str) -> JobState:
        self._call("state", job_id)
        with self._lock:
            job = self.jobs[job_id]
            if job.phase == "Running" and self.finish_on_start:
                self.finish(job_id)
            done = job.phase == "Finished"
            return JobState(job.phase, job.details, job.model.path if done else None,
                            job.evaluation.path if done else None)

    def cancel(self, job_id: str) -> None:
        self._call("cancel", job_id)
        with self._lock:
            if self.jobs[job_id].phase in ("NotStarted", "Running"):
                self.jobs[job_id].phase = "Cancelled"

    # ---- serving --------------------------------------------------------------------------------------------
    def info(self, name: str) -> EndpointInfo | None:
        ep = self.endpoints.get(name)
        return EndpointInfo(ep.name, ep.model_path, ep.model_base, {"fake": True}) if ep else None

    def create_endpoint(self, name: str) -> EndpointInfo:
        self._call("create_endpoint", name)
        with self._lock:
            if name in self.endpoints:
                raise AlreadyExists(f"endpoint '{name}' exists already")
            self.add_endpoint(name, self.endpoints[self.protected].model_path)
            info = self.info(name)
            assert info is not None
            return info

    def put_in_service(self, name: str, model: ModelRef) -> None:
        self._call("put_in_service", name)
        with self._lock:
            ep = self.endpoints[name]
            if model.base is not None and not self.storage.owns(model.base) and model.job_id is None:
                ep.model_path, ep.model_base = self.endpoints[self.protected].model_path, STUDIO_BASE  # a refresh
            else:
                self.storage.grant(BlobRef.parse(model.path), SasPurpose.SERVE_MODEL)
                ep.model_path, ep.model_base = model.path, self.storage.base
            ep.history.append(ep.model_path)

    def verify(self, name: str, model: ModelRef) -> Verdict:
        self._call("verify", name)
        with self._lock:
            if self.verdicts:
                return self.verdicts.pop(0)
            ep = self.endpoints[name]
            if ep.model_path != model.path:
                return Verdict(f"the endpoint shows model {ep.model_path!r}, not {model.path!r}")
            if model.path in self.broken_models:
                return Verdict("the smoke scoring request failed: the model cannot be loaded")
            return Verdict()

    def restore(self, name: str, before: Observed) -> str | None:
        self._call("restore", name)
        with self._lock:
            ep = self.endpoints[name]
            ep.model_path, ep.model_base = before.endpoint.model_path, before.endpoint.model_base
            ep.history.append(ep.model_path)
        return None


class FakeTraining(TrainingService):
    def __init__(self, studio: FakeStudio) -> None:
        self.studio = studio

    def submit(self, run_id: str, data: BlobRef) -> SubmittedJob:
        return self.studio.submit(run_id, data)

    def start(self, job_id: str) -> None:
        self.studio.start(job_id)

    def state(self, job_id: str) -> JobState:
        return self.studio.state(job_id)

    def cancel(self, job_id: str) -> None:
        self.studio.cancel(job_id)


class FakeServing(ServingTarget):
    label = "fake"
    proves_later = True

    def __init__(self, studio: FakeStudio) -> None:
        self.studio = studio

    def protected_endpoint(self) -> str | None:
        return self.studio.protected

    def endpoint(self, name: str) -> EndpointInfo | None:
        self.studio._call("endpoint", name)
        return self.studio.info(name)

    def endpoints(self) -> list[EndpointInfo]:
        return [i for i in (self.studio.info(n) for n in sorted(self.studio.endpoints)) if i is not None]

    def endpoint_names(self) -> list[str]:
        return [n for n in sorted(self.studio.endpoints) if n != self.studio.protected]

    def create_endpoint(self, name: str, options: dict[str, Any]) -> EndpointInfo:
        return self.studio.create_endpoint(name)

    def observe(self, name: str, smoke_row: dict[str, str] | None) -> Observed:
        self.studio._call("observe", name)
        info = self.studio.info(name)
        assert info is not None
        broken = info.model_path in self.studio.broken_models  # it answers with an error retrying cannot fix
        return Observed(info, None if broken else [{"model": str(info.model_path)}], failing=broken)

    def put_in_service(self, name: str, model: ModelRef, keepalive: Keepalive = lambda: None) -> None:
        keepalive()
        self.studio.put_in_service(name, model)

    def verify(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
               keepalive: Keepalive) -> Verdict:
        keepalive()
        return self.studio.verify(name, model)

    def restore(self, name: str, before: Observed, smoke_row: dict[str, str] | None,
                keepalive: Keepalive) -> str | None:
        keepalive()
        return self.studio.restore(name, before)

    def verify_once(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
                    waited: float) -> Verdict | None:
        """`studio.switching[name]` looks say "not yet" before the verdict `verify` would give."""
        self.studio._call("verify_once", name)
        if self.studio.switching.get(name, 0) > 0:
            self.studio.switching[name] -= 1
            return None
        return self.studio.verify(name, model)

    def recall(self, name: str, previous: ModelRef | None, answers: Answers | None, kept: Any = None) -> Observed:
        return Observed(EndpointInfo(name, previous.path if previous else None, previous.base if previous else None),
                        answers)

    def check(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None) -> Verdict:
        try:
            self.studio._call("check", name)
        except ServiceError as exc:  # as the adapters: a check that could not be made says so, and if throttled
            return Verdict(f"the check failed: {exc}", transient=exc.transient,
                           throttle=exc if exc.throttling else None)
        ep = self.studio.endpoints[name]
        if ep.model_path != model.path:
            return Verdict(f"the endpoint serves {ep.model_path!r} now, not {model.path!r}")
        if model.path in self.studio.broken_models:
            return Verdict("the smoke scoring request failed: the model cannot be loaded")
        return Verdict()

    def health(self) -> dict[str, Any]:
        return {"ok": "health" not in self.studio.faults or not self.studio.faults["health"]}


class FakeKind(TargetKind):
    """Targets driven by fake studios (one per target, made on first use)."""

    def __init__(self, storage: BlobStore) -> None:
        self.storage = storage
        self.studios: dict[str, FakeStudio] = {}

    def studio(self, target: Target | str) -> FakeStudio:
        name = target if isinstance(target, str) else target.name
        return self.studios.setdefault(name, FakeStudio(self.storage))

    def training(self, target: Target) -> FakeTraining:
        return FakeTraining(self.studio(target))

    def serving(self, target: Target) -> FakeServing:
        return FakeServing(self.studio(target))
