"""The approval step on the fakes (RETRAIN_APPROVAL=manual): a run that passed the gate waits beside the serving
model's metrics; an operator approves (it deploys) or rejects it; nobody deciding expires it; a newer waiting run
supersedes an older one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import NotFound, Refused
from shared.events import RunApproved, RunAwaitingApproval, RunExpired, RunRejected, RunSuperseded
from shared.records import BlobRef, Run, iso
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import age_run, land

CREATED = "experiment/model.ilearner"


def waiting(w: World, name: str = "acme/d.csv", seed: int = 1) -> Run:
    run = w.trained(name, seed=seed)
    result = land(w, run)
    assert result.status == "Pending" and result.reason == "the run awaits an operator's approval"
    return w.run(run.id)


def test_a_run_that_passed_the_gate_waits_beside_the_serving_model_and_deploys_when_approved():
    w = world(RETRAIN_APPROVAL="manual")
    w.endpoint("acme")
    run = waiting(w)
    assert run.status == "AwaitingApproval" and w.studio.endpoints["acme"].model_path == CREATED
    assert "put_in_service" not in [c[0] for c in w.studio.calls]
    assert run.endpoint_results == [{"endpoint": "acme", "outcome": "AwaitingApproval", "servingModel": CREATED,
                                     "servingMetric": None, "servingMetrics": None}]
    assert run.transitions[-1]["reason"].startswith("waiting for an operator")
    [announced] = w.events.of(RunAwaitingApproval, run.id)
    assert announced.metrics == {"AUC": 0.85} and announced.endpoints == run.endpoint_results
    assert land(w, run).status == "Pending"  # redelivered while waiting: it still waits, announced once
    assert len(w.events.of(RunAwaitingApproval, run.id)) == 1 and w.run(run.id).status == "AwaitingApproval"

    approved = w.app.approvals.approve(run.id, "dave")
    assert approved.status == "Deployed" and w.run(run.id).status == "Deployed"
    assert w.studio.endpoints["acme"].model_path == run.model_path
    assert any(t.get("reason") == "approved by dave" and t["status"] == "Deploying" for t in approved.transitions)
    assert [e.by for e in w.events.of(RunApproved, run.id)] == ["dave"]
    with pytest.raises(Refused) as info:
        w.app.approvals.approve(run.id, "dave")
    assert info.value.code == "NotAwaitingApproval" and info.value.conflict
    with pytest.raises(NotFound):
        w.app.approvals.approve("no-such-run", "dave")


def test_the_waiting_run_shows_the_metric_of_the_model_serving_now():
    w = world(RETRAIN_APPROVAL="manual")
    w.endpoint("acme")
    first = waiting(w, "acme/1.csv", 1)
    w.app.approvals.approve(first.id, "dave")
    w.studio.metrics = {"AUC": 0.9}
    second = waiting(w, "acme/2.csv", 2)
    [shown] = second.endpoint_results
    assert shown["servingModel"] == first.model_path and float(str(shown["servingMetric"])) == 0.85
    assert w.events.of(RunAwaitingApproval, second.id)[0].metrics == {"AUC": 0.9}


def test_a_rejected_run_ends_and_never_deploys():
    w = world(RETRAIN_APPROVAL="manual")
    w.endpoint("acme")
    run = waiting(w)
    rejected = w.app.approvals.reject(run.id, "carol", "not this week")
    assert rejected.status == "Rejected" and rejected.error == "RejectedByOperator: carol: not this week"
    [event] = w.events.of(RunRejected, run.id)
    assert (event.by, event.reason) == ("carol", "not this week")
    assert w.studio.endpoints["acme"].model_path == CREATED and not w.events.of(RunApproved, run.id)
    with pytest.raises(Refused):
        w.app.approvals.approve(run.id, "dave")
    assert w.app.reconciler.reconcile()["checked"] == 0


def test_a_run_nobody_decided_on_expires_and_not_before():
    w = world(RETRAIN_APPROVAL="manual", RETRAIN_APPROVAL_EXPIRY_HOURS="24")
    w.endpoint("acme")
    run = waiting(w)
    summary = w.app.reconciler.reconcile()
    assert summary["checked"] == 1 and summary["expired"] == 0 and w.run(run.id).status == "AwaitingApproval"
    long_ago = iso(datetime.now(UTC) - timedelta(hours=25))
    age_run(w, run.id, transitions=[dict(t, at=long_ago) for t in w.ledger.runs[run.id].transitions])
    assert w.app.reconciler.reconcile()["expired"] == 1
    expired = w.run(run.id)
    assert expired.status == "Cancelled" and str(expired.error).startswith("ApprovalExpired")
    assert len(w.events.of(RunExpired, run.id)) == 1 and w.studio.endpoints["acme"].model_path == CREATED


def test_a_newer_waiting_run_supersedes_an_older_one_and_an_older_one_arriving_late_never_waits():
    w = world(RETRAIN_APPROVAL="manual", RETRAIN_CANCEL_SUPERSEDED_JOBS="false")
    w.endpoint("acme")
    older = waiting(w, "acme/older.csv", 1)
    newer = waiting(w, "acme/newer.csv", 2)
    assert w.run(older.id).status == "Superseded" and w.run(older.id).superseded_by == newer.id
    assert [e.superseded_by for e in w.events.of(RunSuperseded, older.id)] == [newer.id]
    assert w.run(newer.id).status == "AwaitingApproval"
    with pytest.raises(Refused):
        w.app.approvals.approve(older.id, "dave")
    # a run on older data trained after the newer one started waiting: superseded at once
    late = w.trained("acme/late.csv", seed=3)
    age_run(w, late.id, data_time="2020-01-01T00:00:00.000Z")
    result = land(w, w.run(late.id))
    assert result.status == "Failed" and w.run(late.id).status == "Superseded"
    assert w.run(late.id).superseded_by == newer.id and w.run(newer.id).status == "AwaitingApproval"


def test_runs_for_other_endpoints_wait_side_by_side():
    w = world(RETRAIN_APPROVAL="manual")
    w.endpoint("acme")
    w.endpoint("beta")
    a, b = waiting(w, "acme/d.csv", 1), waiting(w, "beta/d.csv", 2)
    assert w.run(a.id).status == w.run(b.id).status == "AwaitingApproval"
    assert {r.id for r in w.app.views.runs(("AwaitingApproval",))} == {a.id, b.id}


def test_a_hand_dropped_model_is_an_operators_act_and_does_not_wait():
    w = world(RETRAIN_APPROVAL="manual")
    w.endpoint("acme")
    ref = BlobRef("models", "acme/hand.ilearner")
    w.storage.put(ref, b"a model")
    result = w.app.model_landing.landed(ref)
    assert result is not None and result.status == "Done"
    assert w.studio.endpoints["acme"].model_path == ref.path and not w.events.of(RunAwaitingApproval)


def test_a_run_past_its_expiry_cannot_be_approved_even_before_the_timer_expires_it():
    """Issue 21: expiry was applied only by the timer, so an expired run could still be approved (and deployed)."""
    w = world(RETRAIN_APPROVAL="manual", RETRAIN_APPROVAL_EXPIRY_HOURS="24")
    w.endpoint("acme")
    run = waiting(w)
    long_ago = iso(datetime.now(UTC) - timedelta(hours=25))
    age_run(w, run.id, transitions=[dict(t, at=long_ago) for t in w.ledger.runs[run.id].transitions])
    with pytest.raises(Refused) as info:
        w.app.approvals.approve(run.id, "dave")
    assert info.value.code == "ApprovalExpired" and info.value.conflict
    expired = w.run(run.id)
    assert expired.status == "Cancelled" and str(expired.error).startswith("ApprovalExpired")
    assert len(w.events.of(RunExpired, run.id)) == 1 and not w.events.of(RunApproved, run.id)
    assert w.studio.endpoints["acme"].model_path == CREATED and "put_in_service" not in [c[0] for c in w.studio.calls]
    with pytest.raises(Refused) as again:
        w.app.approvals.approve(run.id, "dave")
    assert again.value.code == "NotAwaitingApproval"
    assert w.app.reconciler.reconcile()["expired"] == 0  # the timer finds nothing left to expire


def test_a_waiting_run_past_its_expiry_is_expired_when_rejected_too():
    w = world(RETRAIN_APPROVAL="manual", RETRAIN_APPROVAL_EXPIRY_HOURS="1")
    w.endpoint("acme")
    run = waiting(w)
    long_ago = iso(datetime.now(UTC) - timedelta(hours=2))
    age_run(w, run.id, transitions=[dict(t, at=long_ago) for t in w.ledger.runs[run.id].transitions])
    with pytest.raises(Refused) as info:
        w.app.approvals.reject(run.id, "dave", "too late anyway")
    assert info.value.code == "ApprovalExpired" and w.run(run.id).status == "Cancelled"
    assert not w.events.of(RunRejected, run.id)
