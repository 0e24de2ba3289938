"""The operator's actions on the fakes: add an endpoint (and adopt one the ledger never recorded), patch an endpoint
with a given model (gated unless forced, Unchanged when it serves it already), roll back (walking back through
history, or to a named deployment) - each under the endpoint's lease, verified, and recorded in its history."""

from __future__ import annotations

import pytest

import shared.usecases.operations as operations_module
from shared.errors import NotFound, Refused
from shared.events import EndpointRolledBack, EndpointUpdated
from shared.ports.serving import Verdict
from shared.records import BlobRef, Run
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import virtual_time

CREATED = "experiment/model.ilearner"


def serving(w: World, endpoint: str = "acme") -> str | None:
    return w.studio.endpoints[endpoint].model_path


def trained(w: World, name: str, seed: int = 1, auc: float = 0.85) -> Run:
    w.studio.metrics = {"AUC": auc, "Accuracy": 0.8}
    return w.trained(name, seed=seed)


def history(w: World, endpoint: str = "acme") -> list[tuple[str, str]]:
    return [(d.operation, d.outcome) for d in w.ledger.history("default", endpoint)]


# ---- add an endpoint -----------------------------------------------------------------------------------------
def test_an_added_endpoint_starts_its_history_with_the_model_it_was_created_with():
    w = world()
    ep = w.app.operations.add_endpoint("acme", "first tenant")
    assert ep.name == "acme" and ep.model_path == CREATED and serving(w) == CREATED
    [created] = w.ledger.history("default", "acme")
    assert (created.id, created.operation, created.outcome, created.model_path) == ("create", "create", "Created",
                                                                                   CREATED)
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.deployment_id == "create" and cur.model_path == CREATED
    assert cur.lease_owner is None


def test_adding_an_endpoint_that_exists_is_a_conflict_and_a_bad_name_is_refused():
    w = world()
    w.app.operations.add_endpoint("acme")
    with pytest.raises(Refused) as info:
        w.app.operations.add_endpoint("acme")
    assert info.value.code == "EndpointExists" and info.value.conflict
    assert history(w) == [("create", "Created")]
    for bad in ("Acme", "-acme", "a" * 25, "a_b"):
        with pytest.raises(Refused) as info:
            w.app.operations.add_endpoint(bad)
        assert info.value.code == "InvalidEndpointName"
    with pytest.raises(NotFound):
        w.app.operations.add_endpoint("beta", target_name="no-such-target")
    assert sorted(w.studio.endpoints) == ["acme", "default"]


def test_an_endpoint_the_ledger_never_recorded_is_adopted_with_its_history(monkeypatch):
    w = world()
    clock = virtual_time(monkeypatch, operations_module)
    w.studio.add_endpoint("adopted")  # created on the service, then the ledger write failed
    ep = w.app.operations.add_endpoint("adopted", "the caller's retry")
    assert ep.model_path == CREATED and sum(clock.slept) >= 5  # it gave a live creator time to record it
    [created] = w.ledger.history("default", "adopted")
    assert created.operation == "create" and created.model_path == CREATED
    run = trained(w, "adopted/d.csv")
    assert w.app.operations.patch_model(None, "adopted", str(run.model_path)).outcome == "Deployed"
    back = w.app.operations.rollback(None, "adopted")
    assert back.outcome == "Deployed" and serving(w, "adopted") == CREATED
    with pytest.raises(Refused) as info:  # known now: a conflict again
        w.app.operations.add_endpoint("adopted")
    assert info.value.code == "EndpointExists"


# ---- patch a model ----------------------------------------------------------------------------------------------
def test_a_patch_with_a_runs_model_is_gated_verified_and_recorded_with_its_caller():
    w = world()
    w.endpoint("acme")
    run = trained(w, "acme/d.csv")
    result = w.app.operations.patch_model(None, "acme", str(run.model_path), caller="alice")
    assert (result.outcome, result.serving, result.previous) == ("Deployed", run.model_path, CREATED)
    assert serving(w) == run.model_path
    patch = w.ledger.history("default", "acme")[0]
    assert (patch.operation, patch.outcome, patch.caller, patch.forced, patch.trigger) == ("patch", "Deployed",
                                                                                          "alice", False, "http")
    assert patch.metric == 0.85 and patch.model_path == run.model_path
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.deployment_id == patch.id and cur.lease_owner is None
    [event] = [e for e in w.events.of(EndpointUpdated) if e.endpoint == "acme"]
    assert event.operation == "patch" and event.deployment_id == patch.id


def test_a_model_below_the_gate_is_refused_unless_forced_and_a_forced_one_is_recorded_as_such():
    w = world()
    w.endpoint("acme")
    weak = trained(w, "acme/weak.csv", auc=0.5)
    with pytest.raises(Refused) as info:
        w.app.operations.patch_model(None, "acme", str(weak.model_path), caller="alice")
    assert info.value.code == "ModelRejected" and info.value.conflict and "force" in str(info.value)
    assert serving(w) == CREATED and history(w) == [("create", "Created")]
    result = w.app.operations.patch_model(None, "acme", str(weak.model_path), force=True, caller="bob")
    assert result.outcome == "Deployed" and serving(w) == weak.model_path
    forced = w.ledger.history("default", "acme")[0]
    assert forced.forced and forced.caller == "bob" and forced.operation == "patch"


def test_a_model_without_an_evaluation_needs_force_and_an_unusable_evaluation_is_refused():
    """Issue 21: a model without an evaluation was deployed ungated with `force: false`. The gate cannot be applied
    to it, so it needs `force` (and is recorded as forced)."""
    w = world()
    w.endpoint("acme")
    plain = BlobRef("models", "acme/plain.ilearner")
    w.storage.put(plain, b"a model")
    with pytest.raises(Refused) as refused:
        w.app.operations.patch_model(None, "acme", plain.path)
    assert refused.value.code == "ModelRejected" and "no evaluation" in str(refused.value) and refused.value.conflict
    assert serving(w) != plain.path
    assert w.app.operations.patch_model(None, "acme", plain.path, force=True, caller="dana").outcome == "Deployed"
    top = w.ledger.history("default", "acme")[0]
    assert top.forced and top.caller == "dana"
    w.storage.put(BlobRef("models", "acme/odd/evaluation.csv"), b"AUC\nhigh\n")
    w.storage.put(BlobRef("models", "acme/odd/model.ilearner"), b"a model")
    with pytest.raises(Refused) as info:
        w.app.operations.patch_model(None, "acme", "models/acme/odd/model.ilearner", force=True)
    assert info.value.code == "BadEvaluation" and serving(w) == plain.path


def test_patching_the_model_an_endpoint_serves_already_changes_nothing():
    w = world()
    w.endpoint("acme")
    run = trained(w, "acme/d.csv")
    w.app.operations.patch_model(None, "acme", str(run.model_path))
    puts, rows = [c[0] for c in w.studio.calls].count("put_in_service"), len(w.ledger.history("default", "acme"))
    again = w.app.operations.patch_model(None, "acme", str(run.model_path))
    assert again.outcome == "Unchanged" and again.serving == run.model_path
    assert [c[0] for c in w.studio.calls].count("put_in_service") == puts
    assert len(w.ledger.history("default", "acme")) == rows
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.lease_owner is None


@pytest.mark.parametrize(("endpoint", "model", "error", "code"), [
    ("acme", "models/acme/m.txt", Refused, "InvalidRequest"),
    ("acme", "training-data/acme/m.ilearner", Refused, "OutsideContainer"),
    ("acme", "models/acme/../../m.ilearner", Refused, "InvalidRequest"),
    ("acme", "models/acme/missing.ilearner", NotFound, None),
    ("default", "models/acme/m.ilearner", Refused, "DefaultEndpoint"),
    ("ghost", "models/acme/m.ilearner", NotFound, None),
    ("Not-Valid", "models/acme/m.ilearner", Refused, "InvalidEndpointName"),
], ids=["not-ilearner", "other-container", "dot-dot", "missing-model", "default-endpoint", "no-such-endpoint",
        "bad-endpoint-name"])
def test_a_patch_is_refused_before_any_effect(endpoint, model, error, code):
    w = world()
    w.endpoint("acme")
    w.storage.put(BlobRef("models", "acme/m.ilearner"), b"a model")
    w.storage.put(BlobRef("models", "acme/m.txt"), b"a model")
    with pytest.raises(error) as info:
        w.app.operations.patch_model(None, endpoint, model, force=True)
    if code is not None:
        assert info.value.code == code
    assert "put_in_service" not in [c[0] for c in w.studio.calls] and history(w) == [("create", "Created")]


def test_a_patched_model_that_cannot_load_is_rolled_back():
    w = world()
    w.endpoint("acme")
    run = trained(w, "acme/d.csv")
    w.studio.broken_models.add(str(run.model_path))
    result = w.app.operations.patch_model(None, "acme", str(run.model_path))
    assert result.outcome == "RolledBack" and result.serving == CREATED and serving(w) == CREATED
    assert history(w)[0] == ("patch", "RolledBack")


def test_a_manual_patch_is_a_run_stored_before_its_first_effect_and_reconciled_like_any_other():
    w = world()
    w.endpoint("acme")
    run = trained(w, "acme/d.csv")
    w.studio.verdicts.append(Verdict("the smoke request was throttled", transient=True))
    result = w.app.operations.patch_model(None, "acme", str(run.model_path), caller="alice")
    assert result.outcome == "Pending"
    patch = w.ledger.history("default", "acme")[0]
    assert patch.run_id is not None and w.ledger.get_run(patch.run_id) is not None
    w.app.reconciler.reconcile()
    assert serving(w) == run.model_path and w.ledger.history("default", "acme")[0].outcome == "Deployed"


# ---- roll back ----------------------------------------------------------------------------------------------------
def test_consecutive_rollbacks_walk_back_through_history_and_then_there_is_nothing_to_roll_back_to():
    w = world()
    w.endpoint("acme")
    first, second = trained(w, "acme/1.csv", 1), trained(w, "acme/2.csv", 2)
    for run in (first, second):
        assert w.app.operations.patch_model(None, "acme", str(run.model_path)).outcome == "Deployed"
    back = w.app.operations.rollback(None, "acme", caller="carol")
    assert (back.outcome, back.serving, back.previous) == ("Deployed", first.model_path, second.model_path)
    step = w.ledger.history("default", "acme")[0]
    assert step.operation == "rollback" and step.caller == "carol" and step.restores is not None
    assert w.ledger.get_deployment("default", "acme", step.restores) is not None
    back = w.app.operations.rollback(None, "acme")
    assert back.outcome == "Deployed" and serving(w) == CREATED  # not back to the model the first one removed
    with pytest.raises(Refused) as info:
        w.app.operations.rollback(None, "acme")
    assert info.value.code == "NothingToRollBack" and info.value.conflict and serving(w) == CREATED
    events = [e for e in w.events.of(EndpointRolledBack) if e.endpoint == "acme"]
    assert [e.restored_model for e in events] == [first.model_path, CREATED]
    assert [op for op, _ in history(w)] == ["rollback", "rollback", "patch", "patch", "create"]


def test_a_rollback_to_a_named_deployment_and_to_the_one_serving():
    w = world()
    w.endpoint("acme")
    first, second = trained(w, "acme/1.csv", 1), trained(w, "acme/2.csv", 2)
    patched = [w.app.operations.patch_model(None, "acme", str(r.model_path)) for r in (first, second)]
    assert serving(w) == second.model_path
    back = w.app.operations.rollback(None, "acme", to="create")
    assert back.outcome == "Deployed" and serving(w) == CREATED
    again = w.app.operations.rollback(None, "acme", to="create")
    assert again.outcome == "Unchanged"
    forward = w.app.operations.rollback(None, "acme", to=str(patched[0].deployment_id))
    assert forward.outcome == "Deployed" and serving(w) == first.model_path
    with pytest.raises(NotFound):
        w.app.operations.rollback(None, "acme", to="no-such-deployment")
    with pytest.raises(Refused) as info:
        w.app.operations.rollback(None, "default")
    assert info.value.code == "DefaultEndpoint"


def test_a_rollback_whose_model_no_longer_serves_is_itself_rolled_back():
    w = world()
    w.endpoint("acme")
    run = trained(w, "acme/d.csv")
    w.app.operations.patch_model(None, "acme", str(run.model_path))
    w.studio.broken_models.add(CREATED)  # the model to go back to no longer loads
    result = w.app.operations.rollback(None, "acme")
    assert result.outcome == "RolledBack" and serving(w) == run.model_path
    assert not [e for e in w.events.of(EndpointRolledBack) if e.to_deployment == "create"]
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.model_path == run.model_path
