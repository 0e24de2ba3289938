"""The approval step (issue 10): with RETRAIN_APPROVAL=manual a run that passed the gate waits, beside the
serving model's metric, for an operator; a newer run supersedes a waiting one."""

from __future__ import annotations

import pytest

from shared.errors import Refused
from shared.records import BlobRef


def waiting_run(h, tenant: str, name: str, seed: int, drift: float):
    run = h.app.intake.accept(h.upload_data(f"{tenant}/{name}", rows=1200, seed=seed, drift=drift))
    h.wait_job(run.job_id)
    result = h.app.model_landing.landed(BlobRef.parse(str(run.model_path)))
    return h.app.ledger.get_run(run.id), result


def test_a_run_waits_for_approval_beside_the_serving_model_and_deploys_when_approved(harness):
    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_APPROVAL="manual")
    tenant = h.new_endpoint("appr")
    created = h.serving(tenant)
    run, result = waiting_run(h, tenant, "a.csv", 1, 0.8)
    assert result.status == "Pending" and run.status == "AwaitingApproval" and h.serving(tenant) == created
    assert run.endpoint_results == [{"endpoint": tenant, "outcome": "AwaitingApproval", "servingModel": created,
                                     "servingMetric": None, "servingMetrics": None}]
    assert [e for e in h.events("RunAwaitingApproval") if e["data"]["runId"] == run.id]
    approved = h.app.approvals.approve(run.id, "dave")
    assert approved.status == "Deployed" and h.serving(tenant) == run.model_path
    assert any(t.get("reason") == "approved by dave" for t in approved.transitions)
    with pytest.raises(Refused) as info:
        h.app.approvals.approve(run.id, "dave")
    assert info.value.code == "NotAwaitingApproval"


def test_a_newer_run_supersedes_a_waiting_one(harness):
    h = harness(RETRAIN_ENDPOINTS="", RETRAIN_APPROVAL="manual")
    tenant = h.new_endpoint("sup")
    older, _ = waiting_run(h, tenant, "older.csv", 2, 0.5)
    newer, _ = waiting_run(h, tenant, "newer.csv", 3, 1.0)
    older = h.app.ledger.get_run(older.id)
    assert older.status == "Superseded" and older.superseded_by == newer.id
    assert newer.status == "AwaitingApproval"
    assert [e for e in h.events("RunSuperseded") if e["data"]["runId"] == older.id]
