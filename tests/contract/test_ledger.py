"""The ledger port's contract, on FakeLedger and on the table ledger (Azurite): conditional writes, the one way a
run changes, leases, and deployments begun and finished together."""

from __future__ import annotations

import time
import uuid

import pytest

from shared.errors import LeaseBusy, RunMoved, Stale
from shared.ports.ledger import Ledger
from shared.records import Current, Deployment, Run


def new_run(**fields) -> Run:
    return Run(**{"id": uuid.uuid4().hex, "target": "default", **fields})


def attempt(endpoint: str, dep_id: str = "d1", target: str = "default") -> Deployment:
    return Deployment(id=dep_id, target=target, endpoint=endpoint, model_path="models/m")


def test_a_run_is_created_once(ledger: Ledger):
    run = new_run()
    stored, created = ledger.create_run(run)
    assert created and stored.etag
    again, created = ledger.create_run(new_run(id=run.id, data_path="other"))
    assert not created and again.id == run.id and again.data_path is None


def test_a_change_moves_the_run_and_records_the_transition(ledger: Ledger):
    run, _ = ledger.create_run(new_run())
    ledger.change(run, "Submitted", job_id="j1")
    ledger.change(run, "Failed", "JobFailed: it broke", release_claim=True)
    stored = ledger.get_run(run.id)
    assert stored is not None and stored.status == "Failed" and stored.job_id == "j1"
    assert stored.error == "JobFailed: it broke" and [t["status"] for t in stored.transitions] == ["Submitted",
                                                                                                    "Failed"]


def test_a_stale_change_is_made_again_on_the_fresh_run_or_refused(ledger: Ledger):
    run, _ = ledger.create_run(new_run())
    other = ledger.get_run(run.id)
    assert other is not None
    ledger.change(other, rows=10)  # someone else changed it, status unchanged
    ledger.change(run, "Submitted", job_id="j1")  # our etag is stale: applied to the fresh copy
    stored = ledger.get_run(run.id)
    assert stored is not None and (stored.status, stored.rows, stored.job_id) == ("Submitted", 10, "j1")
    late = ledger.get_run(run.id)
    assert late is not None
    ledger.change(run, "Failed", "gone")
    with pytest.raises(RunMoved) as moved:
        ledger.change(late, "Training")  # it moved on to Failed meanwhile
    assert moved.value.run.status == "Failed"  # type: ignore[attr-defined]


def test_a_claim_is_conditional(ledger: Ledger):
    run, _ = ledger.create_run(new_run())
    rival = ledger.get_run(run.id)
    assert rival is not None
    ledger.change(run, if_unchanged=True, claimed_by="me", claimed_until=time.time() + 30)
    with pytest.raises(Stale):
        ledger.change(rival, if_unchanged=True, claimed_by="you", claimed_until=time.time() + 30)


def test_runs_are_listed_newest_first_and_unfinished_oldest_first(ledger: Ledger):
    runs = [ledger.create_run(new_run(created_at=f"2026-01-0{i}T00:00:00.000Z"))[0] for i in range(1, 4)]
    ledger.change(runs[1], "Submitted")
    ids = {r.id for r in runs}
    listed = [r.id for r in ledger.list_runs(limit=1000) if r.id in ids]
    assert listed == [runs[2].id, runs[1].id, runs[0].id]
    assert [r.id for r in ledger.list_runs(("Submitted",), limit=1000) if r.id in ids] == [runs[1].id]
    unfinished = [r.id for r in ledger.unfinished_runs(("Accepted", "Submitted")) if r.id in ids]
    assert unfinished == [runs[0].id, runs[1].id, runs[2].id]


def test_attempts_are_added_once_and_read_back_newest_first(ledger: Ledger):
    endpoint = f"e{uuid.uuid4().hex[:8]}"
    _, created = ledger.add_deployment(attempt(endpoint, "d1"))
    assert created
    _, created = ledger.add_deployment(attempt(endpoint, "d1"))
    assert not created
    later = attempt(endpoint, "d2")
    later.created_at = "2999-01-01T00:00:00.000Z"
    ledger.add_deployment(later)
    later.outcome = "Deployed"
    ledger.save_deployment(later)
    assert [d.id for d in ledger.history("default", endpoint)] == ["d2", "d1"]
    found = ledger.get_deployment("default", endpoint, "d2")
    assert found is not None and found.outcome == "Deployed"


def test_a_lease_is_one_holders_until_released(ledger: Ledger):
    endpoint = f"e{uuid.uuid4().hex[:8]}"
    cur = ledger.acquire("default", endpoint, "me", 30)
    with pytest.raises(LeaseBusy):
        ledger.acquire("default", endpoint, "you", 30)
    ledger.renew(cur, "me", 30)
    with pytest.raises(LeaseBusy):
        ledger.renew(cur, "you", 30)
    cur.model_path = "models/new"
    ledger.release(cur, "me")
    theirs = ledger.acquire("default", endpoint, "you", 30)
    assert theirs.model_path == "models/new" and theirs.lease_owner == "you"
    with pytest.raises(Stale):
        ledger.release(cur, "me")  # ours is an old copy: the pointer moved on


def test_an_expired_lease_can_be_taken_over(ledger: Ledger):
    endpoint = f"e{uuid.uuid4().hex[:8]}"
    ledger.acquire("default", endpoint, "dead", 0.01)
    time.sleep(0.05)
    assert ledger.acquire("default", endpoint, "alive", 30).lease_owner == "alive"


def test_begin_and_finish_go_together_and_a_redelivery_finds_the_outcome(ledger: Ledger):
    endpoint = f"e{uuid.uuid4().hex[:8]}"
    begun = ledger.begin(attempt(endpoint), "me", 30)
    assert begun.created and begun.lease is not None and begun.lease.lease_owner == "me"
    with pytest.raises(LeaseBusy):
        ledger.begin(attempt(endpoint, "d2"), "you", 30)
    begun.dep.outcome = "Deployed"
    begun.lease.serve(begun.dep)
    ledger.finish(begun.dep, begun.lease, "me")
    cur = ledger.current("default", endpoint)
    assert cur is not None and cur.deployment_id == "d1" and cur.lease_owner is None
    again = ledger.begin(attempt(endpoint), "other", 30)
    assert not again.created and again.lease is None and again.dep.outcome == "Deployed"


def test_a_finish_after_a_takeover_keeps_a_failed_outcome_not_the_pointer(ledger: Ledger):
    endpoint = f"e{uuid.uuid4().hex[:8]}"
    begun = ledger.begin(attempt(endpoint), "slow", 0.01)
    time.sleep(0.05)
    ledger.acquire("default", endpoint, "fast", 30)  # the lease had lapsed
    assert begun.lease is not None
    begun.dep.outcome, begun.dep.reason = "RolledBack", "the model did not serve"
    with pytest.raises(Stale):
        ledger.finish(begun.dep, begun.lease, "slow")
    found = ledger.get_deployment("default", endpoint, "d1")
    assert found is not None and found.outcome == "RolledBack"


def test_a_finish_after_a_takeover_never_leaves_a_deployed_without_its_pointer(ledger: Ledger):
    """A Deployed attempt stood without its pointer until its caller recorded it Pending: a reader between the two
    saw the endpoint's newest promotion Deployed while its pointer named the model before (an e2e test caught it
    once). The outcome of a refused Deployed is its caller's to record."""
    endpoint = f"e{uuid.uuid4().hex[:8]}"
    begun = ledger.begin(attempt(endpoint), "slow", 0.01)
    time.sleep(0.05)
    ledger.acquire("default", endpoint, "fast", 30)  # the lease had lapsed
    assert begun.lease is not None
    begun.dep.outcome = "Deployed"
    begun.lease.serve(begun.dep)
    with pytest.raises(Stale):
        ledger.finish(begun.dep, begun.lease, "slow")
    found = ledger.get_deployment("default", endpoint, "d1")
    cur = ledger.current("default", endpoint)
    assert found is not None and found.outcome == "Pending" and cur is not None and cur.deployment_id is None


def test_many_begin_together_unless_one_conflicts(ledger: Ledger):
    prefix = f"m{uuid.uuid4().hex[:6]}"
    endpoints = [f"{prefix}-{i:02d}" for i in range(5)]
    ledger.acquire("default", endpoints[2], "someone", 30)
    currents = ledger.currents("default", endpoints[0], endpoints[-1])
    assert set(currents) == {endpoints[2]}
    began, alone = ledger.begin_many([attempt(e) for e in endpoints], "me", 30, currents)
    assert sorted(b.dep.endpoint for b in began) == [e for e in endpoints if e != endpoints[2]]
    assert [d.endpoint for d in alone] == [endpoints[2]]
    stale: dict[str, Current] = {}  # a row changed since it was read: the batch does not go in
    began, alone = ledger.begin_many([attempt(e, "d2") for e in endpoints[:2]], "me", 30, stale)
    assert began == [] and len(alone) == 2
    for b in ledger.begin_many([attempt(endpoints[3], "d3"), attempt(endpoints[4], "d3")], "me", 30,
                               ledger.currents("default", endpoints[3], endpoints[4]))[0]:
        b.dep.outcome = "Deployed"
        assert b.lease is not None
        b.lease.serve(b.dep)
        assert ledger.finish_many([(b.dep, b.lease)], "me") == []
    cur = ledger.current("default", endpoints[4])
    assert cur is not None and cur.deployment_id == "d3"
