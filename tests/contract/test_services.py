"""The training service and serving target ports' contract, on the fake Studio and on the classic adapters (the
Studio (classic) emulator): a job trains and writes its model and evaluation; an endpoint takes a model, proves it
serves, and goes back."""

from __future__ import annotations

import json
import time

import pytest

from shared.errors import AlreadyExists, ServiceError
from shared.ports.serving import ModelRef
from tests.contract.conftest import Services
from tests.support.harness import SMOKE_ROW


def finished_job(services: Services, name: str) -> tuple[str, str]:
    data = services.drop(name)
    job = services.training.submit("contract" + name.replace("/", "-").replace(".", "-"), data)
    assert job.model_path.startswith("models/") and job.evaluation_path.startswith("models/")
    assert services.training.state(job.job_id).phase in ("NotStarted", "Running")  # Azure ML starts on submit
    services.training.start(job.job_id)
    services.training.start(job.job_id)  # starting again is no error
    services.wait_job(job.job_id)
    state = services.training.state(job.job_id)
    assert state.phase == "Finished" and state.ended, state
    assert state.model_path == job.model_path and state.evaluation_path == job.evaluation_path
    return job.job_id, job.model_path


def test_a_job_trains_and_says_where_its_model_and_evaluation_are(services: Services):
    finished_job(services, "cjob/data.csv")


def test_a_job_can_be_cancelled_before_it_ends(services: Services):
    job = services.training.submit("contractcancel", services.drop("ccancel/data.csv"))
    services.training.cancel(job.job_id)
    services.wait_job(job.job_id)
    assert services.training.state(job.job_id).phase == "Cancelled"


def test_endpoints_are_listed_and_the_protected_one_is_left_out_of_the_names(services: Services):
    name = services.new_endpoint()
    protected = services.serving.protected_endpoint()  # Studio's default endpoint; Azure ML has none
    assert protected != name
    assert name in services.serving.endpoint_names() and protected not in services.serving.endpoint_names()
    assert {name, protected} - {None} <= {e.name for e in services.serving.endpoints()}
    info = services.serving.endpoint(name)
    assert info is not None and info.model_path
    assert services.serving.endpoint("nosuchendpoint") is None
    assert services.serving.health()["ok"] is True


def test_creating_an_endpoint_that_exists_is_refused(services: Services):
    name = services.new_endpoint()
    with pytest.raises(AlreadyExists):
        services.serving.create_endpoint(name, {})


def test_a_model_goes_in_service_is_verified_and_can_be_put_back(services: Services):
    job_id, model_path = finished_job(services, "cswap/data.csv")
    name = services.new_endpoint()
    row = SMOKE_ROW
    before = services.serving.observe(name, row)
    assert before.endpoint.model_path and before.endpoint.model_path != model_path
    model = ModelRef(model_path, job_id=job_id)
    services.serving.put_in_service(name, model, lambda: None)
    assert services.serving.verify(name, model, row, before, lambda: None).ok
    info = services.serving.endpoint(name)
    assert info is not None and info.model_path == model_path
    assert services.serving.restore(name, before, row, lambda: None) is None
    info = services.serving.endpoint(name)
    assert info is not None and info.model_path == before.endpoint.model_path


def test_verifying_a_model_the_endpoint_does_not_serve_fails(services: Services):
    name = services.new_endpoint()
    before = services.serving.observe(name, None)
    verdict = services.serving.verify(name, ModelRef("models/other/model.ilearner"), None, before, lambda: None)
    assert not verdict.ok and not verdict.transient and "models/other/model.ilearner" in str(verdict.problem)


def test_a_swap_is_proven_by_looks_a_throttled_look_says_so_and_what_served_is_put_back_from_a_message(
        services: Services):
    """The queued fan-out's contract (`proves_later`): put in service returns, each look says decided or not yet
    without waiting, a look the service throttled raises its ServiceError marked `throttling` (with Retry-After),
    and `recall` rebuilds, from what a message carries, what `restore` puts back."""
    serving = services.serving
    if not serving.proves_later:
        pytest.skip(f"{type(serving).__name__} proves a swap only by waiting")
    job_id, model_path = finished_job(services, "conce/data.csv")
    name = services.new_endpoint()
    before = serving.observe(name, SMOKE_ROW)
    previous = ModelRef(str(before.endpoint.model_path), before.endpoint.model_base)
    model = ModelRef(model_path, job_id=job_id)
    started = time.monotonic()
    serving.put_in_service(name, model, lambda: None)
    assert time.monotonic() - started < 10
    services.throttle_scoring()
    throttled: list[ServiceError] = []
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, "the swap was not decided"
        light = serving.recall(name, previous, before.answers, serving.kept(before))
        try:
            verdict = serving.verify_once(name, model, SMOKE_ROW, light, time.monotonic() - started)
        except ServiceError as exc:
            assert exc.transient, exc
            if exc.throttling:
                throttled.append(exc)
            verdict = None
        if verdict is not None:
            break
        time.sleep(0.3)
    assert verdict.ok, verdict
    assert throttled and throttled[0].retry_after == 2
    info = serving.endpoint(name)
    assert info is not None and info.model_path == model_path
    kept = json.loads(json.dumps(serving.kept(before)))  # what a message carries
    assert serving.restore(name, serving.recall(name, previous, before.answers, kept), SMOKE_ROW, lambda: None) is None
    info = serving.endpoint(name)
    assert info is not None and info.model_path == before.endpoint.model_path


def test_a_check_the_service_throttled_says_so_with_its_retry_after(services: Services):
    """The post-deploy watch's check: one the service throttled is not a verdict on the model (transient), and
    carries the service's error (`throttle`, Retry-After 2) so every instance can hold off."""
    serving = services.serving
    name = services.new_endpoint()
    info = serving.endpoint(name)
    assert info is not None and info.model_path
    model = ModelRef(info.model_path, info.model_base)
    assert serving.check(name, model, SMOKE_ROW).ok
    services.throttle_scoring()
    verdict = serving.check(name, model, SMOKE_ROW)
    assert not verdict.ok and verdict.transient, verdict
    assert verdict.throttle is not None and verdict.throttle.retry_after == 2, verdict
