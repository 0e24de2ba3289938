"""Burst coalescing on the fakes (RETRAIN_COALESCE_SECONDS, tiny here): a burst of files for one endpoint costs one
job, on the newest file; the older runs end Superseded pointing at it. And with RETRAIN_CANCEL_SUPERSEDED_JOBS a
job still running for older data for exactly the same endpoints is cancelled when newer data is accepted."""

from __future__ import annotations

import pytest

from shared.events import RunSuperseded, TrainingDataAccepted
from shared.records import BlobRef, Run, run_id_for
from tests.fakes.world import World, world
from tests.unit.usecases.helpers import rejected_names

WINDOW = "0.05"


def burst(w: World, folder: str, files: int) -> list[BlobRef]:
    return [w.drop(f"{folder}/burst-{i:02d}.csv", seed=i) for i in range(files)]


def accept_all(w: World, refs: list[BlobRef]) -> list[Run]:
    runs = [w.app.intake.accept(ref) for ref in refs]
    assert all(r is not None for r in runs)
    return [w.run(r.id) for r in runs if r is not None]


@pytest.mark.parametrize("order", ["as-landed", "newest-first"])
def test_a_burst_for_one_endpoint_costs_one_job_on_the_newest_file(order):
    w = world(RETRAIN_COALESCE_SECONDS=WINDOW)
    w.endpoint("acme")
    refs = burst(w, "acme", 6)
    runs = accept_all(w, refs if order == "as-landed" else list(reversed(refs)))
    newest = refs[-1]
    winner_id = run_id_for(newest.path, w.storage.info(newest).etag)
    assert len(w.studio.jobs) == 1 and next(iter(w.studio.jobs.values())).data == newest
    by_status = {r.id: r.status for r in runs}
    assert by_status.pop(winner_id) == "Training" and set(by_status.values()) == {"Superseded"}
    losers = [r for r in runs if r.id != winner_id]
    assert {r.superseded_by for r in losers} == {winner_id} and len(losers) == 5
    assert all(str(r.error).startswith("Superseded") and r.job_id is None for r in losers)
    assert sorted(e.run_id for e in w.events.of(RunSuperseded)) == sorted(r.id for r in losers)
    assert len(w.events.of(TrainingDataAccepted)) == 6  # each file was valid and said so
    assert all(w.storage.exists(ref) for ref in refs) and not rejected_names(w)  # no data lost


def test_bursts_for_two_endpoints_cost_two_jobs():
    w = world(RETRAIN_COALESCE_SECONDS=WINDOW)
    w.endpoint("acme")
    w.endpoint("beta")
    refs = [ref for pair in zip(burst(w, "acme", 3), burst(w, "beta", 3), strict=True) for ref in pair]
    runs = accept_all(w, refs)
    assert len(w.studio.jobs) == 2
    assert sorted(j.data.name for j in w.studio.jobs.values()) == ["acme/burst-02.csv", "beta/burst-02.csv"]
    assert [r.status for r in runs].count("Superseded") == 4


def test_without_a_window_every_file_trains():
    w = world(RETRAIN_CANCEL_SUPERSEDED_JOBS="false")
    w.endpoint("acme")
    runs = accept_all(w, burst(w, "acme", 3))
    assert [r.status for r in runs] == ["Training"] * 3 and len(w.studio.jobs) == 3


def test_when_the_newest_file_of_a_burst_is_rejected_the_older_ones_stay_superseded():
    w = world(RETRAIN_COALESCE_SECONDS=WINDOW)
    w.endpoint("acme")
    older = w.drop("acme/good.csv")
    bad = w.drop("acme/bad.csv", text="age,workclass\n39,State-gov\n")
    first = w.app.intake.accept(older)
    rejected = w.app.intake.accept(bad)
    assert first is not None and rejected is not None
    assert w.run(first.id).status == "Superseded" and w.run(first.id).superseded_by == rejected.id
    assert w.run(rejected.id).status == "Rejected" and not w.studio.jobs
    # documented (docs/lifecycle.md): drop the good file again - a new version, and nothing newer beside it now
    again = w.app.intake.accept(w.drop("acme/good.csv", seed=4))
    assert again is not None and again.status == "Training" and len(w.studio.jobs) == 1


def test_top_level_files_for_different_endpoints_are_not_coalesced():
    w = world(RETRAIN_COALESCE_SECONDS=WINDOW, RETRAIN_ENDPOINTS="*")
    w.endpoint("acme")
    w.endpoint("beta")
    for_acme = w.drop("for-acme.csv", metadata={"retrainendpoints": "acme"})
    for_beta = w.drop("for-beta.csv", metadata={"retrainendpoints": "beta"})
    runs = accept_all(w, [for_acme, for_beta])
    assert [r.status for r in runs] == ["Training", "Training"] and len(w.studio.jobs) == 2


# ---- cancelling a job for older data -------------------------------------------------------------------------------
def test_a_job_still_running_for_older_data_for_the_same_endpoints_is_cancelled():
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    older = w.app.intake.accept(w.drop("acme/older.csv", seed=1))
    newer = w.app.intake.accept(w.drop("acme/newer.csv", seed=2))
    assert older is not None and newer is not None and older.job_id
    stored = w.run(older.id)
    assert stored.status == "Superseded" and stored.superseded_by == newer.id and "cancelled" in str(stored.error)
    assert w.studio.jobs[older.job_id].phase == "Cancelled" and ("cancel", older.job_id) in w.studio.calls
    assert w.run(newer.id).status == "Training"
    assert [e.superseded_by for e in w.events.of(RunSuperseded, older.id)] == [newer.id]


def test_jobs_for_other_endpoints_finished_jobs_and_jobs_with_cancelling_off_are_left_alone():
    w = world()
    w.endpoint("acme")
    w.endpoint("beta")
    w.studio.finish_on_start = False
    other = w.app.intake.accept(w.drop("beta/d.csv", seed=1))
    done = w.app.intake.accept(w.drop("acme/done.csv", seed=2))
    assert other is not None and done is not None and done.job_id
    w.studio.finish(done.job_id)  # its model is made (and paid for): newest-wins decides at deployment
    newer = w.app.intake.accept(w.drop("acme/newer.csv", seed=3))
    assert newer is not None
    assert w.run(other.id).status == "Training" and w.run(done.id).status == "Training"
    assert "cancel" not in [c[0] for c in w.studio.calls]
    off = world(RETRAIN_CANCEL_SUPERSEDED_JOBS="false")
    off.endpoint("acme")
    off.studio.finish_on_start = False
    runs = accept_all(off, [off.drop("acme/1.csv", seed=1), off.drop("acme/2.csv", seed=2)])
    assert [r.status for r in runs] == ["Training", "Training"] and "cancel" not in [c[0] for c in off.studio.calls]


def test_a_cancel_the_service_refuses_leaves_the_older_run_going():
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    older = w.app.intake.accept(w.drop("acme/older.csv", seed=1))
    w.studio.fail("cancel", transient=False)
    newer = w.app.intake.accept(w.drop("acme/newer.csv", seed=2))
    assert older is not None and newer is not None
    assert w.run(older.id).status == "Training" and w.run(newer.id).status == "Training"
    assert not w.events.of(RunSuperseded)


def test_two_files_in_the_same_second_are_ordered_by_when_they_were_taken_in_not_by_name():
    """Last-Modified has one-second resolution: within one second the total order of runs decides (issue 21) - the
    file taken in later is the newer data, whatever its name."""
    from shared.records import BlobRef

    w = world(RETRAIN_COALESCE_SECONDS="0.05")
    w.endpoint("acme")
    first = w.drop("acme/zz-first.csv", seed=1)
    second = BlobRef(first.container, "acme/aa-second.csv")  # the same second, a name that sorts first
    w.storage.put(second, w.storage.read_bytes(first).replace(b"\n", b"\r\n", 1))
    older = w.app.intake.accept(first)
    newer = w.app.intake.accept(second)
    assert older is not None and newer is not None and older.data_time == newer.data_time
    assert w.run(older.id).status == "Superseded" and w.run(older.id).superseded_by == newer.id
    assert w.run(newer.id).status == "Training"


def test_an_upload_never_waits_the_coalescing_window_in_the_request_its_storage_event_goes_on():
    """Issue 21: the window was waited inside the HTTP call (an upload answered after it). Now the upload answers
    with the run Accepted (validated, no job yet) and the file's own storage event settles and submits it."""
    w = world(RETRAIN_COALESCE_SECONDS="30")
    w.endpoint("acme")
    from tools.emulator.census import csv_text

    run = w.app.intake.from_upload("acme/new.csv", csv_text(120, 3).encode(), caller="uploader")
    assert run is not None and run.status == "Accepted" and run.rows == 120 and run.claimed_by is None
    assert not w.studio.jobs
    later = w.app.intake.accept(__import__("shared.records", fromlist=["BlobRef"]).BlobRef(
        w.settings.data_container, "acme/new.csv"))  # the storage event of the uploaded file
    assert later is not None and later.id == run.id and later.status == "Training" and len(w.studio.jobs) == 1
