"""A file landing in models/ on the fakes: a run's model is promoted and its other outputs left to it; a model a
person dropped there is deployed to the endpoints its path routes to (gated only when an evaluation sits beside
it), or moved to rejected/ with the reason when it is empty, routes nowhere or only to the default endpoint, or no
endpoint will serve it; any other file is not taken and says why."""

from __future__ import annotations

import logging

from shared.events import EndpointUpdated, ModelRejected
from shared.records import BlobRef
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import land, reason_file

CREATED = "experiment/model.ilearner"


def drop_model(w: World, name: str, data: bytes = b"a model", evaluation: str | None = None) -> BlobRef:
    if evaluation is not None:
        w.storage.put(BlobRef("models", name.rsplit("/", 1)[0] + "/evaluation.csv"), evaluation.encode())
    ref = BlobRef("models", name)
    w.storage.put(ref, data)
    return ref


def test_a_file_that_is_not_a_model_is_not_taken_and_says_why():
    """Issue 21: a .csv or random bytes under models/ were silent (the trigger saw only .ilearner names)."""
    w = world()
    w.endpoint("acme")
    for name in ("acme/notes.txt", "acme/data.csv", "random-bytes", "evaluation.csv"):
        ref = drop_model(w, name, data=bytes(range(256)))
        result = w.app.model_landing.landed(ref)
        assert result is not None and result.status == "Rejected", name
        assert w.run(result.run_id).status == "Rejected" and "UnsupportedFileType" in str(w.run(result.run_id).error)
        assert not w.storage.exists(ref) and reason_file(w, f"models/{name}")["code"] == "UnsupportedFileType"
        assert [e.code for e in w.events.of(ModelRejected, result.run_id)] == ["UnsupportedFileType"]
    kept = drop_model(w, "acme/evaluation.csv")  # read when a model lands beside it
    assert w.app.model_landing.landed(kept) is None and w.storage.exists(kept)
    assert "put_in_service" not in [c[0] for c in w.studio.calls]


def test_a_runs_outputs_are_left_to_it_and_a_stray_file_in_its_folder_is_not_taken(caplog):
    """Issue 21: another .ilearner in a run's folder promoted the run again, logging 'Deployed' for a file that was
    in fact ignored."""
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    assert land(w, run).status == "Done"
    calls = len(w.studio.calls)
    with caplog.at_level(logging.INFO, logger="shared.usecases.model_landing"):
        evaluation = BlobRef.parse(str(w.run(run.id).evaluation_path))
        assert w.app.model_landing.landed(evaluation) is None
        stray = drop_model(w, f"{run.id}/notes.ilearner")
        result = w.app.model_landing.landed(stray)
    assert result is not None and result.status == "Rejected" and result.run_id != run.id
    assert reason_file(w, f"models/{run.id}/notes.ilearner")["code"] == "NotTheRunsModel"
    assert len(w.studio.calls) == calls and w.run(run.id).status == "Deployed"
    said = [r.getMessage() for r in caplog.records]
    assert any(f"output of run {run.id}" in m for m in said) and any("not taken (NotTheRunsModel)" in m for m in said)
    # a run whose outputs are folders (Azure ML: model/ and evaluation/): every file in them is the run's
    azureml = w.trained("acme/e.csv", seed=2)
    w.ledger.runs[azureml.id].model_path = f"models/{azureml.id}/model"
    w.ledger.runs[azureml.id].evaluation_path = f"models/{azureml.id}/evaluation/evaluation.csv"
    for name in ("model/model.json", "model/MLmodel", "evaluation/evaluation.csv", "evaluation/metrics.json"):
        assert w.app.model_landing.landed(drop_model(w, f"{azureml.id}/{name}")) is None, name
    other = w.app.model_landing.landed(drop_model(w, f"{azureml.id}/other.txt"))
    assert other is not None and other.status == "Rejected"


def test_a_hand_dropped_model_for_the_default_endpoint_is_not_taken_and_says_why():
    """Issue 21: no event, no rejected/ copy - the fan-out refused the default endpoint and nothing else was said."""
    w = world()
    ref = drop_model(w, "default/hand.ilearner")
    result = w.app.model_landing.landed(ref)
    assert result is not None and result.status == "Rejected"
    assert w.run(result.run_id).status == "Rejected" and str(w.run(result.run_id).error).startswith("DefaultEndpoint")
    assert not w.storage.exists(ref) and reason_file(w, "models/default/hand.ilearner")["code"] == "DefaultEndpoint"
    assert [e.code for e in w.events.of(ModelRejected, result.run_id)] == ["DefaultEndpoint"]
    assert "put_in_service" not in [c[0] for c in w.studio.calls]


def test_a_runs_model_landing_promotes_that_run():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    result = w.app.model_landing.landed(BlobRef.parse(str(run.model_path)))
    assert result is not None and result.run_id == run.id and result.status == "Done"
    assert w.run(run.id).status == "Deployed" and len(w.ledger.runs) == 1


def test_a_hand_dropped_model_without_an_evaluation_is_deployed_as_an_operators_act():
    w = world()
    w.endpoint("acme")
    ref = drop_model(w, "acme/hand.ilearner")
    result = w.app.model_landing.landed(ref)
    assert result is not None and result.status == "Done"
    run = w.run(result.run_id)
    assert (run.kind, run.status, run.endpoints, run.model_path, run.metrics) == ("manual", "Deployed", ["acme"],
                                                                                  ref.path, {})
    assert run.transitions[0]["status"] == "Trained" and w.studio.endpoints["acme"].model_path == ref.path
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.run_id == run.id and cur.model_path == ref.path
    assert [e.endpoint for e in w.events.of(EndpointUpdated, run.id)] == ["acme"]
    again = w.app.model_landing.landed(ref)  # redelivered: the same run, one attempt, one PUT
    assert again is not None and again.run_id == run.id and again.status == "Done"
    assert [c[0] for c in w.studio.calls].count("put_in_service") == 1
    assert len([d for d in w.ledger.history("default", "acme") if d.run_id == run.id]) == 1


def test_a_hand_dropped_model_with_an_evaluation_is_gated():
    w = world()
    w.endpoint("acme")
    good = drop_model(w, "acme/good/model.ilearner", evaluation="AUC,Accuracy\n0.91,0.8\n")
    result = w.app.model_landing.landed(good)
    assert result is not None and result.status == "Done"
    assert w.run(result.run_id).metrics == {"AUC": 0.91, "Accuracy": 0.8}
    weak = drop_model(w, "acme/weak/model.ilearner", evaluation="AUC,Accuracy\n0.55,0.8\n")
    result = w.app.model_landing.landed(weak)
    assert result is not None and result.status == "Rejected"
    assert w.run(result.run_id).status == "BelowGate" and w.studio.endpoints["acme"].model_path == good.path
    assert w.storage.exists(weak)  # a model below the gate is not bad data: it stays
    assert [e.code for e in w.events.of(ModelRejected, result.run_id)] == ["BelowGate"]


def test_a_top_level_model_goes_to_the_configured_endpoints():
    w = world(RETRAIN_ENDPOINTS="acme,beta")
    w.endpoint("acme")
    w.endpoint("beta")
    result = w.app.model_landing.landed(drop_model(w, "for-all.ilearner"))
    assert result is not None and {e.endpoint: e.outcome for e in result.endpoints} == {"acme": "Deployed",
                                                                                       "beta": "Deployed"}


def test_a_model_no_endpoint_will_serve_is_moved_to_rejected_and_the_old_model_serves():
    w = world()
    w.endpoint("acme")
    ref = drop_model(w, "acme/broken.ilearner", b"will not load")
    w.studio.broken_models.add(ref.path)
    result = w.app.model_landing.landed(ref)
    assert result is not None and result.status == "Rejected" and str(result.reason).startswith("ModelNotServable")
    assert w.studio.endpoints["acme"].model_path == CREATED and not w.storage.exists(ref)
    assert w.storage.read_bytes(BlobRef("rejected", "models/acme/broken.ilearner")) == b"will not load"
    assert reason_file(w, "models/acme/broken.ilearner")["code"] == "ModelNotServable"
    [event] = w.events.of(ModelRejected, result.run_id)
    assert event.code == "ModelNotServable" and event.moved_to == "rejected/models/acme/broken.ilearner"


def test_a_model_the_service_refuses_everywhere_is_rejected_too():
    w = world()
    w.endpoint("acme")
    ref = drop_model(w, "acme/refused.ilearner")
    w.studio.fail("put_in_service", transient=False, input_refused=True)
    result = w.app.model_landing.landed(ref)
    assert result is not None and result.status == "Rejected" and w.run(result.run_id).status == "Rejected"
    assert not w.storage.exists(ref) and w.storage.exists(BlobRef("rejected", "models/acme/refused.ilearner"))


def test_a_model_one_endpoint_serves_is_kept_in_models():
    w = world(RETRAIN_ENDPOINTS="acme,beta", RETRAIN_PATCH_CONCURRENCY="1", RETRAIN_FANOUT_MODE="inline")
    w.endpoint("acme")
    w.endpoint("beta")
    ref = drop_model(w, "both.ilearner")
    w.studio.fail("put_in_service", transient=False, input_refused=True)  # acme (first) refuses it
    result = w.app.model_landing.landed(ref)
    assert result is not None and w.run(result.run_id).status == "PartiallyDeployed"
    assert w.storage.exists(ref) and not w.storage.names("rejected")


def test_a_file_that_cannot_be_read_back_is_noted_where_it_is():
    w = world()
    ref = BlobRef("models", "acme/..\\odd.ilearner")
    w.storage.put(ref, b"a model")
    result = w.app.model_landing.landed(ref)
    assert result is not None and result.status == "Rejected"
    assert w.run(result.run_id).status == "Rejected" and w.storage.exists(ref)
    assert reason_file(w, "models/acme/.._odd.ilearner")["code"] == "UnreadableName"
    assert [e.code for e in w.events.of(ModelRejected, result.run_id)] == ["UnreadableName"]


def test_a_model_gone_before_it_is_read_is_nothing_to_do():
    w = world()
    w.endpoint("acme")
    assert w.app.model_landing.landed(BlobRef("models", "acme/gone.ilearner")) is None
    assert not w.ledger.runs
