"""The reconcile pass on the fakes: what a crash or a missed event left - a run left Accepted, a job submitted and
not started, a job past its deadline, a failed or cancelled job, a finished job whose model no trigger saw, events
the topic did not take - is finished, and one broken run does not stop the pass."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.events import JobFailed, JobSubmitted, TrainingDataAccepted
from shared.records import BlobRef, Run, iso, run_id_for
from tests.fakes.world import World, data_text, world
from tests.unit.usecases.helpers import age_run

LONG_AGO = iso(datetime.now(UTC) - timedelta(days=2))


def crashed_after_accept(w: World, name: str = "acme/d.csv", claim_lapsed: bool = True) -> Run:
    """A run as an invocation that died right after inserting it leaves it: Accepted, claimed, nothing more."""
    ref = w.drop(name)
    info = w.storage.info(ref)
    run = Run(id=run_id_for(ref.path, info.etag), target="?", data_path=ref.path, data_etag=info.etag,
              data_time=iso(info.last_modified), claimed_by="a-dead-invocation",
              claimed_until=time.time() + (-1 if claim_lapsed else 30),
              transitions=[{"status": "Accepted", "at": LONG_AGO}])
    created, _ = w.ledger.create_run(run)
    return created


def test_a_run_a_crash_left_accepted_is_resumed_once_its_claim_lapsed():
    w = world()
    w.endpoint("acme")
    run = crashed_after_accept(w)
    summary = w.app.reconciler.reconcile()
    assert summary["resubmitted"] == 1 and summary["errors"] == 0
    resumed = w.run(run.id)
    assert resumed.status == "Training" and resumed.trigger == "blob" and resumed.claimed_by is None
    assert len(w.studio.jobs) == 1 and w.events.types(run.id) == ["TrainingDataAccepted", "JobSubmitted"]
    assert w.app.reconciler.reconcile()["resubmitted"] == 0


def test_a_run_whose_claim_is_alive_is_left_to_its_holder():
    w = world()
    w.endpoint("acme")
    run = crashed_after_accept(w, claim_lapsed=False)
    summary = w.app.reconciler.reconcile()
    assert summary["checked"] == 1 and summary["resubmitted"] == 0
    assert w.run(run.id).status == "Accepted" and not w.studio.jobs


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_a_run_left_accepted_whose_file_version_is_gone_ends_cancelled(how):
    w = world()
    w.endpoint("acme")
    run = crashed_after_accept(w)
    ref = BlobRef.parse(str(run.data_path))
    if how == "replaced":
        w.storage.put(ref, data_text(130, seed=7).encode())
    else:
        w.storage.delete(ref)
    w.app.reconciler.reconcile()
    gone = w.run(run.id)
    assert gone.status == "Cancelled" and str(gone.error).startswith("VersionGone") and how in str(gone.error)
    assert gone.claimed_by is None and not w.studio.jobs


def test_a_job_submitted_and_never_started_is_started_and_announced():
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    ref = w.drop("acme/d.csv")
    w.studio.fail("start", transient=True)  # the invocation gave up between the submit and the start
    with pytest.raises(Exception, match="start failed"):
        w.app.intake.accept(ref)
    [run] = w.ledger.list_runs()
    assert run.status == "Submitted" and not w.events.of(JobSubmitted, run.id)
    summary = w.app.reconciler.reconcile()
    assert summary["started"] == 1
    assert w.run(run.id).status == "Training" and w.studio.jobs[str(run.job_id)].phase == "Running"
    assert len(w.events.of(JobSubmitted, run.id)) == 1
    assert [c[0] for c in w.studio.calls].count("submit") == 1


def test_a_submitted_run_whose_job_runs_already_is_recorded_as_training():
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    run = w.app.intake.accept(w.drop("acme/d.csv"))
    assert run is not None and run.job_id
    stored = w.ledger.runs[run.id]  # as if the crash came after the start, before it was recorded
    stored.status, stored.transitions = "Submitted", stored.transitions[:-1]
    starts = [c[0] for c in w.studio.calls].count("start")
    assert w.app.reconciler.reconcile()["started"] == 1
    assert w.run(run.id).status == "Training" and [c[0] for c in w.studio.calls].count("start") == starts


def test_a_submitted_run_whose_job_finished_already_is_recorded_and_promoted_in_one_pass():
    w = world()
    w.endpoint("acme")
    run = w.app.intake.accept(w.drop("acme/d.csv"))
    assert run is not None and run.job_id
    stored = w.ledger.runs[run.id]  # the crash came after the start, before it was recorded; the job is done
    stored.status, stored.transitions = "Submitted", stored.transitions[:-1]
    w.studio.finish(run.job_id)
    assert w.app.reconciler.reconcile()["promoted"] == 1
    done = w.run(run.id)
    assert done.status == "Deployed" and [t["status"] for t in done.transitions][-4:] == [
        "Training", "Trained", "Deploying", "Deployed"]


def test_a_run_whose_submit_failed_past_the_budget_is_submitted_by_reconcile_once():
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    w.studio.fail("submit", transient=True)
    with pytest.raises(Exception, match="submit failed"):
        w.app.intake.accept(w.drop("acme/d.csv"))  # and the platform gave up on the trigger
    [run] = w.ledger.list_runs()
    assert run.status == "Accepted" and run.claimed_by is None and run.rows == 120
    assert w.app.reconciler.reconcile()["resubmitted"] == 1
    assert w.run(run.id).status == "Training" and len(w.studio.jobs) == 1
    assert w.events.types(run.id) == ["TrainingDataAccepted", "JobSubmitted"]


def test_a_job_past_its_deadline_is_cancelled_and_the_run_fails():
    w = world(RETRAIN_JOB_DEADLINE_MINUTES="60")
    w.endpoint("acme")
    w.studio.finish_on_start = False
    run = w.app.intake.accept(w.drop("acme/slow.csv"))
    assert run is not None and run.job_id
    assert w.app.reconciler.reconcile()["cancelled"] == 0  # within its deadline: left alone
    age_run(w, run.id, submitted_at=LONG_AGO)
    summary = w.app.reconciler.reconcile()
    assert summary["cancelled"] == 1
    stored = w.run(run.id)
    assert stored.status == "Failed" and str(stored.error).startswith("DeadlineExceeded")
    assert w.studio.jobs[run.job_id].phase == "Cancelled" and ("cancel", run.job_id) in w.studio.calls
    [failed] = w.events.of(JobFailed, run.id)
    assert failed.status == "DeadlineExceeded"


@pytest.mark.parametrize(("phase", "status"), [("Failed", "Failed"), ("Cancelled", "Cancelled")])
def test_a_job_that_failed_or_was_cancelled_ends_the_run(phase, status):
    w = world()
    w.endpoint("acme")
    run = w.app.intake.accept(w.drop("acme/d.csv"))
    assert run is not None and run.job_id
    w.studio.finish(run.job_id, phase, "the module threw" if phase == "Failed" else None)
    summary = w.app.reconciler.reconcile()
    assert summary["failed"] == 1
    stored = w.run(run.id)
    assert stored.status == status and str(stored.error).startswith("JobFailed")
    [event] = w.events.of(JobFailed, run.id)
    assert event.status == phase and (phase != "Failed" or "the module threw" in str(event.details))
    assert w.app.reconciler.reconcile()["checked"] == 0


def test_a_finished_job_whose_model_no_trigger_saw_is_promoted():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    summary = w.app.reconciler.reconcile()
    assert summary["promoted"] == 1
    assert w.run(run.id).status == "Deployed" and w.studio.endpoints["acme"].model_path == run.model_path


def test_a_hand_dropped_model_left_deploying_is_finished():
    w = world()
    w.endpoint("acme")
    ref = BlobRef("models", "acme/hand.ilearner")
    w.storage.put(ref, b"a model")
    w.studio.fail("put_in_service", transient=True)
    result = w.app.model_landing.landed(ref)
    assert result is not None and result.status == "Pending" and w.run(result.run_id).status == "Deploying"
    assert w.app.reconciler.reconcile()["promoted"] == 1
    assert w.run(result.run_id).status == "Deployed" and w.studio.endpoints["acme"].model_path == ref.path


def test_one_broken_run_does_not_stop_the_pass():
    w = world()
    w.endpoint("acme")
    w.endpoint("beta")
    broken = w.app.intake.accept(w.drop("beta/d.csv"))
    assert broken is not None
    w.ledger.runs[broken.id].target = "no-such-target"  # a row the settings no longer know
    outage = w.app.intake.accept(w.drop("beta/e.csv"))
    assert outage is not None
    good = w.trained("acme/d.csv")
    w.studio.fail("state", times=1, transient=True)  # the first run asked about: the service is throttling
    summary = w.app.reconciler.reconcile()
    assert summary["checked"] == 3 and summary["errors"] >= 1 and summary["promoted"] >= 1, summary
    assert w.run(good.id).status == "Deployed"
    assert w.run(broken.id).status == "Training"  # left as it was, to be tried again


def test_events_the_topic_did_not_take_are_flushed_and_a_failing_flush_does_not_stop_the_pass(monkeypatch):
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    w.events.down = True
    run = w.app.intake.accept(w.drop("acme/d.csv"))
    assert run is not None and not w.events.published and len(w.events.waiting) == 2
    w.events.down = False
    assert w.app.reconciler.reconcile()["eventsSent"] == 2
    assert [type(e) for e in w.events.published] == [TrainingDataAccepted, JobSubmitted] and not w.events.waiting

    flush, calls = w.events.flush, []

    def broken_once(limit: int = 1000) -> int:  # the pass's own flush fails; later ones work
        calls.append(limit)
        if len(calls) == 1:
            raise ConnectionError("the outbox table is unreachable")
        return flush(limit)

    monkeypatch.setattr(w.events, "flush", broken_once)
    w.studio.finish(str(run.job_id))
    summary = w.app.reconciler.reconcile()
    assert summary["eventsSent"] == 0 and summary["promoted"] == 1
