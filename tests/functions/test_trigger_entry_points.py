"""The blob-triggered and timer functions called as the worker calls them: a `BlobClient` built by the binding
extension's own converter from the host's model-binding data, a real `TimerRequest`, and a context."""

from __future__ import annotations

import logging
import uuid

import pytest
from azure.functions.timer import TimerRequest

from blueprints import blob_triggers, timers
from shared.records import BlobRef
from tools.devhost.invoke import DevContext, blob_argument


@pytest.fixture
def app(wire):
    return wire()


def blob_client(ref: BlobRef):
    import azurefunctions.extensions.bindings.blob as blob

    client = blob_argument(blob.BlobClient, "AzureWebJobsStorage", ref.container, ref.name, "", download=None)
    assert type(client).__name__ == "BlobClient" and client.blob_name == ref.name
    return client


def run_function(builder, argument) -> None:
    fn = builder.build()
    fn.get_user_function()(argument, context=DevContext(fn.get_function_name(), "/app"))


def test_training_data_then_model_landing_deploys_to_the_tenant_endpoint(app):
    h = app
    tenant = h.new_endpoint("blob")
    before = h.score(tenant)
    ref = h.upload_data(f"{tenant}/landed.csv", rows=3000, drift=1.0)
    run_function(blob_triggers.training_data_landed, blob_client(ref))
    runs = [r for r in h.app.views.runs(None, 500) if r.data_path == ref.path]
    assert len(runs) == 1 and runs[0].status == "Training"
    h.wait_job(runs[0].job_id)
    run_function(blob_triggers.model_landed, blob_client(BlobRef.parse(runs[0].model_path)))
    assert h.serving(tenant) == runs[0].model_path
    assert h.score(tenant) != before


def test_a_second_delivery_of_the_same_blob_starts_no_second_job(app):
    h = app
    tenant = h.new_endpoint("dup")
    ref = h.upload_data(f"{tenant}/twice.csv", rows=500)
    run_function(blob_triggers.training_data_landed, blob_client(ref))
    run_function(blob_triggers.training_data_landed, blob_client(ref))
    assert len(h.jobs_for(ref.path)) == 1


def test_bad_data_is_handled_not_raised(app):
    h = app
    tenant = h.new_endpoint("bad")
    ref = h.upload_data(f"{tenant}/bad.csv", text="just,two\n1,2\n")
    run_function(blob_triggers.training_data_landed, blob_client(ref))  # no exception: no retries, no poison
    assert h.app.storage.exists(BlobRef("rejected", f"training-data/{tenant}/bad.csv"))


def test_any_valid_blob_name_works_bad_data_rejected_and_good_data_trained(app):
    """Issue 21: a name that is not ASCII could not be rejected (its path went into blob metadata, which must be
    ASCII): no copy, no reason, the run left Accepted, the blob poisoned."""
    h = app
    tenant = h.new_endpoint("utf")
    bad = h.upload_data(f"{tenant}/été-データ-bad.csv", text="just,two\n1,2\n")
    run_function(blob_triggers.training_data_landed, blob_client(bad))
    [run] = [r for r in h.app.views.runs(None, 500) if r.data_path == bad.path]
    assert run.status == "Rejected" and not h.app.storage.exists(bad)
    moved = BlobRef("rejected", f"training-data/{bad.name}")
    assert h.app.storage.read_bytes(moved) == b"just,two\n1,2\n"
    assert b'"source"' in h.app.storage.read_bytes(BlobRef("rejected", moved.name + ".reason.json"))
    good = h.upload_data(f"{tenant}/été-データ-good.csv", rows=300)
    run_function(blob_triggers.training_data_landed, blob_client(good))
    [run] = [r for r in h.app.views.runs(None, 500) if r.data_path == good.path]
    assert run.status == "Training" and len(h.jobs_for(good.path)) == 1


def test_a_transient_failure_past_the_budget_raises_so_the_host_retries(wire):
    from shared.adapters.classic.errors import StudioApiError

    h = wire(RETRAIN_HTTP_MAX_ATTEMPTS="1")
    tenant = h.new_endpoint("busy")
    h.fault(route="bes.submit", status=503, retry_after=0, count=5)
    ref = h.upload_data(f"{tenant}/busy.csv", rows=300)
    with pytest.raises(StudioApiError):
        run_function(blob_triggers.training_data_landed, blob_client(ref))
    h.clear_faults()
    run_function(blob_triggers.training_data_landed, blob_client(ref))  # the host's retry succeeds
    assert len(h.jobs_for(ref.path)) == 1


def test_a_file_in_models_that_is_not_a_model_is_not_taken_and_says_why(app, caplog):
    """Issue 21: the trigger saw only .ilearner names, so anything else under models/ was silent."""
    h = app
    ref = BlobRef("models", f"notes-{uuid.uuid4().hex[:6]}.csv")
    h.put(ref, b"hello")
    with caplog.at_level(logging.INFO):
        run_function(blob_triggers.model_landed, blob_client(ref))
    assert not h.app.storage.exists(ref)
    assert h.app.storage.read_bytes(BlobRef("rejected", f"models/{ref.name}")) == b"hello"
    assert b"UnsupportedFileType" in h.app.storage.read_bytes(BlobRef("rejected", f"models/{ref.name}.reason.json"))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{ref.path} is not taken (UnsupportedFileType)" in said and "Rejected" in said


def test_the_reconcile_timer_runs_and_logs_a_summary(app, caplog):
    with caplog.at_level(logging.INFO, logger="blueprints.timers"):
        run_function(timers.reconcile, TimerRequest(past_due=True))
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "past due" in messages and "reconcile: checked=" in messages
