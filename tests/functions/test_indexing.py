"""What the Functions host will read from function_app: exactly these functions, bindings, routes, auth levels and
blob-trigger sources. A failure here is a "0 functions loaded" (or a silently wrong trigger) after deployment."""

from __future__ import annotations

import inspect
from pathlib import Path

import azurefunctions.extensions.bindings.blob as blob

HTTP = {
    "health": ("health", ["GET"]),
    "endpoints_create": ("endpoints", ["POST"]),
    "endpoints_list": ("endpoints", ["GET"]),
    "endpoints_get": ("endpoints/{name}", ["GET"]),
    "endpoints_patch_model": ("endpoints/{name}/model", ["POST"]),
    "endpoints_rollback": ("endpoints/{name}/rollback", ["POST"]),
    "retrain": ("retrain", ["POST"]),
    "runs_list": ("runs", ["GET"]),
    "runs_get": ("runs/{id}", ["GET"]),
    "runs_approve": ("runs/{id}/approve", ["POST"]),
    "status": ("status", ["GET"]),
    "runs_reject": ("runs/{id}/reject", ["POST"]),
}
BLOB = {"training_data_landed": "training-data/{name}", "model_landed": "models/{name}"}


def test_exactly_the_expected_functions(indexed):
    assert set(indexed) == set(HTTP) | set(BLOB) | {"reconcile", "azureml_job_event", "fanout_work",
                                                               "blob_poisoned"}


def test_blobs_the_host_gave_up_on_come_through_a_queue_trigger_on_its_poison_queue(indexed):
    spec = indexed["blob_poisoned"]
    assert spec.trigger_type == "queueTrigger" and spec.queue_name == "webjobs-blobtrigger-poison"
    assert spec.trigger["connection"] == "AzureWebJobsStorage"


def test_the_fan_out_work_comes_through_a_queue_trigger_on_the_host_storage(indexed):
    spec = indexed["fanout_work"]
    assert spec.trigger_type == "queueTrigger" and spec.queue_name == "retrain-work"
    assert spec.trigger["connection"] == "AzureWebJobsStorage" and spec.trigger_parameter == "msg"


def test_the_azure_ml_job_events_come_through_an_event_grid_trigger(indexed):
    spec = indexed["azureml_job_event"]
    assert spec.trigger_type == "eventGridTrigger" and spec.trigger_parameter == "event"


def test_http_routes_methods_and_function_auth_level(indexed):
    for name, (route, methods) in HTTP.items():
        spec = indexed[name]
        assert spec.trigger_type == "httpTrigger"
        assert (spec.route, spec.methods, spec.auth_level) == (route, methods, "FUNCTION"), name
        assert [b["type"] for b in spec.bindings] == ["httpTrigger", "http"]


def test_blob_triggers_use_the_event_grid_source_and_a_streaming_blob_client(indexed):
    for name, path in BLOB.items():
        spec = indexed[name]
        assert spec.trigger_type == "blobTrigger"
        assert spec.trigger["path"] == path
        assert spec.trigger["connection"] == "AzureWebJobsStorage"
        assert spec.trigger["source"] == "EventGrid"
        # an SDK-type binding, never InputStream (which loads the whole blob into memory)
        assert spec.parameters[spec.trigger_parameter] is blob.BlobClient


def test_reconcile_timer_reads_its_schedule_from_a_setting(indexed):
    spec = indexed["reconcile"]
    assert spec.trigger_type == "timerTrigger"
    assert spec.trigger["schedule"] == "%RETRAIN_RECONCILE_SCHEDULE%"
    assert spec.trigger["runOnStartup"] is False
    assert spec.schedule == "0 */5 * * * *"


def test_every_function_takes_the_invocation_context(indexed):
    for spec in indexed.values():
        assert "context" in spec.parameters, spec.name


def test_function_app_only_registers_blueprints():
    source = (Path(__file__).parents[2] / "function_app.py").read_text()
    code = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith(("#", '"""'))]
    assert "@app." not in source and "def " not in source
    assert len(code) <= 12
    import function_app

    assert inspect.ismodule(function_app)
