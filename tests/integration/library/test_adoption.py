"""Endpoints that existed before the app (issue 20): on first contact the app records what such an endpoint serves
as its baseline ("adopted"), so the first rollback returns to it - on Studio (classic) and on Azure ML."""

from __future__ import annotations

import time
import uuid

from shared.ports.serving import ModelRef
from tests.integration.azureml_target.test_flow import INLINE, deployments, serving, trained


def test_a_classic_endpoint_created_in_the_portal_is_adopted_retrained_and_rolled_back_to_its_first_model(harness):
    h = harness(RETRAIN_ENDPOINTS="")
    name = f"legacy{uuid.uuid4().hex[:8]}"
    h.mgmt().create_endpoint(name, "created in the portal, before the app")  # the service has it; the ledger not
    original = h.serving(name)
    view = h.app.views.endpoint(None, name)
    assert view["managed"] is False and view["history"] == []
    run = h.app.intake.accept(h.upload_data(f"{name}/data.csv", drift=0.9))
    result = h.app.model_landing.landed(__import__("shared.records", fromlist=["BlobRef"]).BlobRef.parse(
        run.model_path))
    assert [e.outcome for e in result.endpoints] == ["Deployed"] and h.serving(name) == run.model_path
    history = h.app.ledger.history("default", name)
    assert [(d.operation, d.outcome) for d in history] == [("promote", "Deployed"), ("adopt", "Created")]
    assert history[-1].model_path == original and h.app.views.endpoint(None, name)["managed"] is True
    back = h.app.operations.rollback(None, name)
    assert back.outcome == "Deployed", back
    assert h.serving(name) == original


def test_an_azure_ml_endpoint_made_directly_is_adopted_retrained_and_rolled_back_by_a_traffic_switch(aml_harness):
    h = aml_harness(**INLINE)  # promoted and rolled back in the call
    target = h.settings.targets[0]
    training, service = h.app.services.training(target), h.app.services.serving(target)
    # someone else's endpoint: created through the service, serving a model of theirs from a deployment of theirs
    name = f"own{uuid.uuid4().hex[:8]}"
    service.create_endpoint(name, {})
    theirs = training.submit(f"theirs{uuid.uuid4().hex[:6]}", h.upload_data("theirs/data.csv", rows=800))
    deadline = time.monotonic() + 60
    while not training.state(theirs.job_id).ended:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    first = ModelRef(theirs.model_path, job_id=theirs.job_id)
    service.put_in_service(name, first, lambda: None)
    assert service.verify(name, first, None, service.observe(name, None), lambda: None).ok
    blue = next(iter(deployments(h, name)))
    assert h.app.views.endpoint(None, name)["managed"] is False

    run = trained(h, name, 4)
    assert h.app.promotion.on_job_event(run.job_id, "Completed").status == "Done"
    assert serving(h, name) == f"models/{run.id}/model"
    history = h.app.ledger.history("default", name)
    assert [(d.operation, d.outcome) for d in history] == [("promote", "Deployed"), ("adopt", "Created")]
    back = h.app.operations.rollback(None, name)
    assert back.outcome == "Deployed", back
    assert serving(h, name) == theirs.model_path and deployments(h, name)[blue] == 100  # their deployment again
