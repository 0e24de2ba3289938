"""Each port's contract runs twice: on its in-memory fake and on its real adapter (Azurite, the classic emulator).
A fixture gives the port under test and the few arrangements the contract needs from outside it (a user's
upload, the events a topic received)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.ports.blobs import BlobStore
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.serving import ModelRef, ServingTarget
from shared.ports.training import TrainingService
from shared.records import BlobRef
from tests.fakes.studio import FakeServiceError
from tests.fakes.world import world

KINDS = ["fake", "real"]


@dataclass
class Stores:
    store: BlobStore
    put: Callable[[BlobRef, bytes], object]  # a user's write: replaces what is there
    container: str  # a container of the app's own
    rejected: str
    delete: Callable[[BlobRef], object]  # a user's delete


@dataclass
class Sinks:
    sink: EventSink
    received: Callable[[], list[dict[str, Any]]]  # what the topic took of this test's: [{type, subject, data}]
    outage: Callable[[bool], None]  # the topic refuses (True) or takes (False) events
    mark: str  # put it in a subject: `received` is what carries it


@dataclass
class Services:
    training: TrainingService
    serving: ServingTarget
    drop: Callable[[str], BlobRef]  # a valid training file, landed
    new_endpoint: Callable[[], str]  # an endpoint that exists, serving its first model
    wait_job: Callable[[str], None]  # until the job ends (the fake's ends when asked)
    throttle_scoring: Callable[[], None] = lambda: None  # the next smoke request is answered 429, Retry-After 2


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stores(kind: str, request: pytest.FixtureRequest) -> Stores:
    if kind == "fake":
        w = world()
        return Stores(w.storage, w.storage.put, w.settings.data_container, w.settings.rejected_container,
                      w.storage.delete)
    h = request.getfixturevalue("harness")()
    return Stores(h.app.storage, h.put, h.settings.data_container, h.settings.rejected_container,
                  lambda ref: h.app.storage.blob.get_blob_client(ref.container, ref.name).delete_blob())


@pytest.fixture
def ledger(kind: str, request: pytest.FixtureRequest) -> Ledger:
    if kind == "fake":
        return world().ledger
    led: Ledger = request.getfixturevalue("harness")().app.ledger
    return led


@pytest.fixture
def sinks(kind: str, request: pytest.FixtureRequest) -> Iterator[Sinks]:
    mark = uuid.uuid4().hex
    if kind == "fake":
        w = world()

        def fake_outage(down: bool) -> None:
            w.events.down = down

        yield Sinks(w.events, lambda: [{"type": f"Retrain.{e.type_name()}", "subject": e.subject, "data": e.data()}
                                       for e in w.events.published if mark in e.subject], fake_outage, mark)
        return
    h = request.getfixturevalue("harness")()

    def real_outage(down: bool) -> None:
        if down:
            h.fault(route="eventgrid.publish", status=503, count=100000)
        else:
            h.clear_faults()

    yield Sinks(h.app.events, lambda: [e for e in h.events() if mark in str(e.get("subject"))], real_outage, mark)
    h.clear_faults()


@pytest.fixture(params=["fake", "classic", "azureml"])
def services(request: pytest.FixtureRequest) -> Services:
    kind = str(request.param)
    if kind == "fake":
        w = world()
        target = w.settings.targets[0]

        def fake_endpoint() -> str:
            name = f"c{uuid.uuid4().hex[:10]}"
            w.studio.add_endpoint(name)
            return name

        def fake_throttle() -> None:
            error = FakeServiceError("throttled", transient=True, status=429)
            error.retry_after = 2
            for operation in ("verify_once", "check"):  # the next look, or the next watch's check
                w.studio.faults.setdefault(operation, []).append(error)

        return Services(w.app.services.training(target), w.app.services.serving(target),
                        lambda name: w.drop(name), fake_endpoint, lambda job_id: None, fake_throttle)
    if kind == "classic":
        h = request.getfixturevalue("harness")(RETRAIN_ENDPOINTS="")
        target = h.settings.targets[0]
        return Services(h.app.services.training(target), h.app.services.serving(target),
                        lambda name: h.upload_data(name, rows=300), lambda: h.new_endpoint("c"), h.wait_job,
                        lambda: h.fault(route="rrs.execute", status=429, retry_after=2, count=1))
    h = request.getfixturevalue("aml_harness")()
    target = h.settings.targets[0]
    training, serving = h.app.services.training(target), h.app.services.serving(target)

    def wait_aml_job(job_id: str) -> None:
        deadline = time.monotonic() + 60
        while not training.state(job_id).ended:
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.2)

    def aml_endpoint() -> str:
        """An endpoint serving a first model (a job trained once per session, deployed with all traffic)."""
        name = f"c{uuid.uuid4().hex[:10]}"
        serving.create_endpoint(name, {})
        if "model" not in FIRST_MODEL:
            job = training.submit(f"first{uuid.uuid4().hex[:8]}", h.upload_data("cfirst/data.csv", rows=300))
            wait_aml_job(job.job_id)
            FIRST_MODEL["model"] = ModelRef(job.model_path, job_id=job.job_id)
        model = FIRST_MODEL["model"]
        serving.put_in_service(name, model, lambda: None)
        before = serving.observe(name, None)
        assert serving.verify(name, model, None, before, lambda: None).ok
        return name

    return Services(training, serving, lambda name: h.upload_data(name, rows=300), aml_endpoint, wait_aml_job,
                    lambda: h.fault(route="azureml.score", status=429, retry_after=2, count=1))


FIRST_MODEL: dict[str, ModelRef] = {}  # the azureml endpoints' first model, trained once
