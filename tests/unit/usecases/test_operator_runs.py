"""Every operator action is a run (issue 21): stored before its first effect, with the data time of the model it
deploys, and finished by reconcile when the call that began it could not - a host killed after the swap included."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events import EndpointRolledBack
from shared.ports.serving import Verdict
from shared.records import Run
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import age_run, at_write, land


class HostDied(BaseException):
    """The process dies here (nothing after it runs)."""


def trained(w: World, name: str, seed: int) -> Run:
    return w.trained(name, seed=seed)


def test_a_rollback_killed_after_the_swap_is_finished_by_reconcile_with_the_right_pointer():
    w = world()
    w.endpoint("acme")
    first, second = trained(w, "acme/1.csv", 1), trained(w, "acme/2.csv", 2)
    land(w, first)
    land(w, second)

    def die(_record: object) -> None:
        raise HostDied

    at_write(w, "attempt.finish", die)  # the service serves the first model again; the ledger never hears of it
    with pytest.raises(HostDied):
        w.app.operations.rollback(None, "acme", caller="carol")
    w.ledger.on_write = None
    assert w.studio.endpoints["acme"].model_path == first.model_path
    action = next(r for r in w.ledger.runs.values() if r.id.startswith("rollback-"))
    assert action.status == "Deploying" and action.caller == "carol"  # stored before its first effect
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.model_path == second.model_path  # stale until reconcile
    age_run(w, action.id)
    pointer = w.ledger.pointers[("default", "acme")]
    pointer.lease_until = 0.0  # the dead host's lease lapsed
    w.app.reconciler.reconcile()
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.model_path == first.model_path and cur.lease_owner is None
    assert w.ledger.get_run(action.id).status == "Deployed"  # type: ignore[union-attr]
    assert w.studio.endpoints["acme"].model_path == first.model_path
    w.events.flush()
    # announced as a rollback once, by whoever finished it (it was lost when reconcile did: issue 21's e2e crash test)
    rolled = [e for e in w.events.of(EndpointRolledBack) if e.endpoint == "acme" and e.failed_model is None]
    assert [(e.restored_model, e.run_id) for e in rolled] == [(first.model_path, action.id)]


def test_a_patch_left_pending_is_a_run_the_api_shows_and_reconcile_finishes():
    w = world()
    w.endpoint("acme")
    run = trained(w, "acme/1.csv", 1)
    w.studio.verdicts.append(Verdict("the smoke request was throttled", transient=True))
    result = w.app.operations.patch_model(None, "acme", str(run.model_path), caller="alice")
    assert result.outcome == "Pending"
    action = w.app.views.run(w.ledger.history("default", "acme")[0].run_id or "")
    assert action.status == "Deploying" and action.caller == "alice" and action.model_path == run.model_path
    w.app.reconciler.reconcile()
    assert w.ledger.get_run(action.id).status == "Deployed"  # type: ignore[union-attr]
    assert w.studio.endpoints["acme"].model_path == run.model_path


def test_a_manual_patch_carries_its_models_data_time_so_an_approval_on_newer_data_is_not_voided():
    w = world(RETRAIN_APPROVAL="manual")
    w.endpoint("acme")
    older = trained(w, "acme/old.csv", 1)
    newer = trained(w, "acme/new.csv", 2)
    assert land(w, newer).status == "Pending" and w.run(newer.id).status == "AwaitingApproval"
    patched = w.app.operations.patch_model(None, "acme", str(older.model_path), caller="bob")
    assert patched.outcome == "Deployed"
    action = w.app.views.run(w.ledger.history("default", "acme")[0].run_id or "")
    assert action.data_time == w.run(older.id).data_time  # the model's data, not the time of the call
    w.app.approvals.approve(newer.id, "carol")
    assert w.run(newer.id).status == "Deployed" and w.studio.endpoints["acme"].model_path == newer.model_path


def test_a_forced_patch_stays_forced_when_reconcile_finishes_it():
    w = world()
    w.endpoint("acme")
    w.studio.metrics = {"AUC": 0.5, "Accuracy": 0.5}
    weak = trained(w, "acme/weak.csv", 1)
    w.studio.verdicts.append(Verdict("throttled", transient=True))
    assert w.app.operations.patch_model(None, "acme", str(weak.model_path), force=True,
                                        caller="dave").outcome == "Pending"
    action = next(r for r in w.ledger.runs.values() if r.id.startswith("patch-"))
    assert action.forced
    w.app.reconciler.reconcile()
    assert w.ledger.get_run(action.id).status == "Deployed"  # type: ignore[union-attr]
    attempt = next(d for d in w.ledger.history("default", "acme") if d.run_id == action.id)
    assert attempt.forced and attempt.outcome == "Deployed" and attempt.caller == "dave"


def test_a_rollback_finished_later_is_not_gated_again_even_below_the_gate():
    """Review: reconcile (and a queued fan-out's tally) finished an operator's rollback through the gate - a rollback
    to a model below the gate (one an operator had forced in) ended BelowGate, the endpoint left on the model the
    operator rolled back from. The operator's decision stands: a patch or rollback is gated when the operator acts,
    never again."""
    w = world(RETRAIN_GATE_MINIMUM="0.8")
    w.endpoint("acme")
    w.studio.metrics = {"AUC": 0.75, "Accuracy": 0.75}
    weak = trained(w, "acme/1.csv", 1)
    assert w.app.operations.patch_model(None, "acme", str(weak.model_path), force=True).outcome == "Deployed"
    w.studio.metrics = {"AUC": 0.9, "Accuracy": 0.9}
    strong = trained(w, "acme/2.csv", 2)
    land(w, strong)
    assert w.studio.endpoints["acme"].model_path == strong.model_path
    w.studio.verdicts.append(Verdict("throttled", transient=True))  # the rollback's check: not proven now
    assert w.app.operations.rollback(None, "acme", caller="erin").outcome == "Pending"
    action = next(r for r in w.ledger.runs.values() if r.id.startswith("rollback-"))
    assert action.model_path == weak.model_path
    w.app.reconciler.reconcile()
    assert w.ledger.get_run(action.id).status == "Deployed"  # type: ignore[union-attr]
    assert w.studio.endpoints["acme"].model_path == weak.model_path


def test_a_rollback_keeps_what_it_goes_back_to_in_what_served_before(monkeypatch):
    """Second review: what a swap goes back to leaves out the deployment being swapped in (so a failing new model is
    tidied away) - but a rollback's target is a deployment that served (Azure ML keeps it at 0 % for this): left out,
    a failed or unproven rollback deleted the very standby it was switching back to. A rollback takes what served
    before as observed; a run's promotion and a patch still take the target's baseline."""
    w = world()
    w.endpoint("acme")
    first, second = trained(w, "acme/1.csv", 1), trained(w, "acme/2.csv", 2)
    serving = w.app.services.serving(w.settings.targets[0])
    asked: list[str] = []
    real = serving.baseline

    def baseline(endpoint: str, model: Any, observed: Any) -> Any:
        asked.append(model.path)
        return real(endpoint, model, observed)

    monkeypatch.setattr(serving, "baseline", baseline)
    land(w, first)
    land(w, second)
    assert asked == [first.model_path, second.model_path]
    assert w.app.operations.rollback(None, "acme").outcome == "Deployed"
    assert asked == [first.model_path, second.model_path]  # not asked for the rollback's target
