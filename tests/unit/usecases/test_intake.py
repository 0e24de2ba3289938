"""Intake on the fakes: a data file accepted, validated, routed and its job submitted and started - once per file
version; every refusal moved to rejected/ with its reason; uploads that never overwrite; the service's refusals and
outages."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shared.errors import NotFound, Refused
from shared.events import JobFailed, JobSubmitted, TrainingDataAccepted, TrainingDataRejected
from shared.ports.blobs import SasPurpose
from shared.records import BlobRef
from tests.fakes.studio import FakeServiceError
from tests.fakes.world import World, data_text, world
from tests.unit.usecases.helpers import reason_file, rejected_names, two_classic_targets

BAD_HEADER = "age,workclass\n39,State-gov\n"


def phase(w: World, job_id: str) -> str:
    return w.studio.jobs[job_id].phase


def statuses(run) -> list[str]:
    return [t["status"] for t in run.transitions]


# ---- accepted, routed, submitted ------------------------------------------------------------------------------
def test_a_file_in_a_tenant_folder_is_validated_routed_and_its_job_submitted_and_started():
    w = world()
    w.endpoint("acme")
    w.endpoint("other")
    ref = w.drop("acme/data.csv", rows=120)
    run = w.app.intake.accept(ref)
    assert run is not None
    stored = w.run(run.id)
    assert (stored.status, stored.target, stored.endpoints) == ("Training", "default", ["acme"])
    assert statuses(stored) == ["Accepted", "Submitted", "Training"]
    assert stored.rows == 120 and stored.claimed_by is None and stored.data_path == ref.path
    assert stored.smoke_row and "income" not in stored.smoke_row and "age" in stored.smoke_row
    assert stored.job_id == "job-1" and stored.model_path == f"models/{run.id}/model.ilearner"
    job = w.studio.jobs["job-1"]
    assert job.data == ref and job.phase == "Running"
    assert [c for c in w.studio.calls if c[0] in ("submit", "start")] == [("submit", ref.path), ("start", "job-1")]
    assert (ref, SasPurpose.JOB_INPUT) in w.storage.grants
    assert w.events.types(run.id) == ["TrainingDataAccepted", "JobSubmitted"]
    accepted = w.events.of(TrainingDataAccepted, run.id)[0]
    assert accepted.rows == 120 and sum(accepted.labels.values()) == 120 and accepted.endpoints == ["acme"]
    assert accepted.bytes == len(w.storage.read_bytes(ref))
    submitted = w.events.of(JobSubmitted, run.id)[0]
    assert submitted.job_id == "job-1" and submitted.model == stored.model_path
    assert w.storage.exists(ref) and not rejected_names(w)


def test_a_top_level_file_goes_to_the_endpoints_its_metadata_names():
    w = world(RETRAIN_ENDPOINTS="zeta")
    run = w.app.intake.accept(w.drop("batch.csv", metadata={"retrainendpoints": "beta, alpha"}))
    assert run is not None and run.status == "Training" and w.run(run.id).endpoints == ["beta", "alpha"]


def test_a_top_level_upload_naming_its_endpoints_trains_when_the_target_lists_none():
    w = world(RETRAIN_ENDPOINTS="")
    w.endpoint("acme")
    run = w.app.intake.from_upload("for-acme.csv", data_text(120).encode(), endpoints="acme")
    assert run is not None and run.status == "Training" and w.run(run.id).endpoints == ["acme"]


def test_a_top_level_file_goes_to_the_targets_configured_endpoints():
    w = world(RETRAIN_ENDPOINTS="alpha,beta")
    run = w.app.intake.accept(w.drop("all.csv"))
    assert run is not None and w.run(run.id).endpoints == ["alpha", "beta"]
    assert w.events.of(JobSubmitted, run.id)[0].endpoints == ["alpha", "beta"]


def test_a_file_under_a_targets_data_prefix_routes_to_that_target():
    w = world(RETRAIN_TARGETS=two_classic_targets())
    w.app.operations.add_endpoint("acme", "eu tenant", target_name="eu")
    w.app.operations.add_endpoint("home", "default tenant")
    eu_run = w.app.intake.accept(w.drop("eu/acme/d.csv"))
    home_run = w.app.intake.accept(w.drop("home/d.csv"))
    assert eu_run is not None and home_run is not None
    assert (w.run(eu_run.id).target, w.run(eu_run.id).endpoints) == ("eu", ["acme"])
    assert (w.run(home_run.id).target, w.run(home_run.id).endpoints) == ("default", ["home"])
    eu_studio, home_studio = w.kind.studio("eu"), w.kind.studio("default")
    assert [j.data.name for j in eu_studio.jobs.values()] == ["eu/acme/d.csv"]
    assert [j.data.name for j in home_studio.jobs.values()] == ["home/d.csv"]


def test_redelivery_returns_the_same_run_and_submits_once():
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/data.csv")
    first = w.app.intake.accept(ref)
    again = [w.app.intake.accept(ref) for _ in range(3)]
    assert first is not None and {r.id for r in again if r} == {first.id}
    assert len(w.studio.jobs) == 1 and [c[0] for c in w.studio.calls].count("submit") == 1
    assert w.events.types(first.id) == ["TrainingDataAccepted", "JobSubmitted"]


def test_a_new_version_of_the_same_file_is_a_run_of_its_own():
    w = world()
    w.endpoint("acme")
    first = w.app.intake.accept(w.drop("acme/data.csv", seed=1))
    second = w.app.intake.accept(w.drop("acme/data.csv", seed=2))
    assert first is not None and second is not None and first.id != second.id
    assert len(w.studio.jobs) == 2


# ---- every refusal: rejected/ with a reason, an event, no job ---------------------------------------------------
REFUSALS = {
    "bad-csv": ("acme/bad.csv", BAD_HEADER, {}, "MissingColumns", 1),
    "unknown-label": ("acme/labels.csv", data_text(120).replace("<=50K", "no").replace(">50K", "yes"), {},
                      "UnknownLabel", 2),
    "ragged-row": ("acme/ragged.csv", None, {}, "RaggedRow", 52),
    "no-such-endpoint": ("ghost/data.csv", data_text(120), {}, "NoSuchEndpoint", None),
    "invalid-tenant": ("Not_A_Tenant/data.csv", data_text(120), {}, "InvalidTenant", None),
    "no-endpoints": ("top.csv", data_text(120), {}, "NoEndpoints", None),
    "not-csv": ("acme/data.txt", data_text(120), {}, "UnsupportedFileType", None),
    "too-large": ("acme/big.csv", data_text(120), {"RETRAIN_MAX_DATA_BYTES": "1000"}, "TooLarge", None),
    "too-few-rows": ("acme/few.csv", data_text(10), {}, "TooFewRows", None),
    # issue 21: the default endpoint was refused only at deployment, after a (billed) job had trained for it
    "default-endpoint-folder": ("default/data.csv", data_text(120), {}, "DefaultEndpoint", None),
    "default-endpoint-listed": ("top.csv", data_text(120), {"RETRAIN_ENDPOINTS": "default"}, "DefaultEndpoint", None),
}


def ragged() -> str:
    lines = data_text(120).splitlines()
    lines[51] += ",extra"
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_moves_the_file_to_rejected_with_a_reason_and_an_event(case):
    name, text, settings, code, line = REFUSALS[case]
    w = world(**settings)
    w.endpoint("acme")
    body = ragged() if text is None else text
    ref = w.drop(name, text=body)
    run = w.app.intake.accept(ref)
    assert run is not None
    stored = w.run(run.id)
    assert stored.status == "Rejected" and str(stored.error).startswith(f"{code}: ")
    assert statuses(stored) == ["Accepted", "Rejected"] and stored.claimed_by is None and stored.job_id is None
    assert not w.storage.exists(ref)
    moved = f"training-data/{name}"
    assert w.storage.read_bytes(BlobRef("rejected", moved)) == body.encode()
    reason = reason_file(w, moved)
    assert (reason["code"], reason["runId"], reason["source"], reason["line"]) == (code, run.id, ref.path, line)
    assert w.events.types(run.id) == ["TrainingDataRejected"]
    event = w.events.of(TrainingDataRejected, run.id)[0]
    assert (event.code, event.moved_to, event.blob, event.line) == (code, f"rejected/{moved}", ref.path, line)
    assert not w.studio.jobs and "submit" not in [c[0] for c in w.studio.calls]
    # redelivered: the file is gone from the data container; nothing more happens
    assert w.app.intake.accept(ref) is None
    assert len(w.events.of(TrainingDataRejected)) == 1


def test_two_bad_versions_under_one_name_are_both_kept_with_their_reasons():
    w = world()
    w.endpoint("acme")
    first, second = BAD_HEADER, "income\n>50K\n"
    runs = [w.app.intake.accept(w.drop("acme/bad.csv", text=text)) for text in (first, second)]
    assert all(r is not None and r.status == "Rejected" for r in runs)
    kept = [n for n in rejected_names(w) if not n.endswith(".reason.json")]
    assert len(kept) == 2 and len(rejected_names(w)) == 4
    assert {w.storage.read_bytes(BlobRef("rejected", n)).decode() for n in kept} == {first, second}
    assert {reason_file(w, n)["runId"] for n in kept} == {r.id for r in runs if r}


def test_a_name_that_cannot_be_read_back_is_recorded_once_and_stays_where_it_is():
    w = world()
    ref = BlobRef("training-data", "acme/..\\sneaky.csv")
    w.storage.put(ref, data_text(120).encode())
    run = w.app.intake.accept(ref)
    assert run is not None and run.status == "Rejected" and str(run.error).startswith("UnreadableName")
    assert w.storage.exists(ref)  # never moved: it could not be read back
    note = "training-data/acme/.._sneaky.csv"
    assert reason_file(w, note)["code"] == "UnreadableName" and reason_file(w, note)["stays"] is True
    again = w.app.intake.accept(ref)
    assert again is not None and again.id == run.id
    events = w.events.of(TrainingDataRejected, run.id)
    assert len(events) == 1 and events[0].reason_at == f"rejected/{note}.reason.json"
    assert not w.studio.jobs


# ---- the file changes while it is read --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_a_file_replaced_or_deleted_while_read_ends_cancelled_version_gone(monkeypatch, how):
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/moving.csv", seed=1)
    read = w.storage.chunks

    def meanwhile(blob: BlobRef, etag: str | None = None) -> Iterator[bytes]:
        if how == "replaced":
            w.storage.put(blob, data_text(130, seed=2).encode())
        else:
            w.storage.delete(blob)
        yield from read(blob, etag)

    monkeypatch.setattr(w.storage, "chunks", meanwhile)
    run = w.app.intake.accept(ref)
    assert run is not None
    stored = w.run(run.id)
    assert stored.status == "Cancelled" and str(stored.error).startswith("VersionGone")
    assert ("deleted" if how == "deleted" else "replaced") in str(stored.error)
    assert stored.claimed_by is None and not w.studio.jobs and not rejected_names(w)
    assert w.events.types(run.id) == []
    monkeypatch.setattr(w.storage, "chunks", read)
    if how == "replaced":  # the new version is a run of its own, and trains
        newer = w.app.intake.accept(ref)
        assert newer is not None and newer.id != run.id and newer.status == "Training"
    assert w.app.reconciler.reconcile()["resubmitted"] == 0
    assert w.run(run.id).status == "Cancelled"


# ---- uploads ------------------------------------------------------------------------------------------------------
def test_an_upload_is_create_only_the_same_bytes_again_are_a_retry_other_bytes_are_refused():
    w = world()
    w.endpoint("acme")
    good = data_text(120, seed=3).encode()
    run = w.app.intake.from_upload("acme/up.csv", good, caller="alice")
    assert run is not None and run.status == "Training" and w.run(run.id).caller == "alice"
    again = w.app.intake.from_upload("acme/up.csv", good)
    assert again is not None and again.id == run.id and len(w.studio.jobs) == 1
    with pytest.raises(Refused) as info:
        w.app.intake.from_upload("acme/up.csv", BAD_HEADER.encode())
    assert info.value.code == "BlobExists" and info.value.conflict
    assert w.storage.read_bytes(BlobRef("training-data", "acme/up.csv")) == good
    assert not rejected_names(w) and len(w.studio.jobs) == 1


def test_an_upload_outside_a_tenant_folder_must_name_its_endpoints_and_they_travel_with_the_file():
    w = world(RETRAIN_ENDPOINTS="acme,beta")
    w.endpoint("acme")
    data = data_text(120).encode()
    with pytest.raises(Refused) as info:
        w.app.intake.from_upload("top.csv", data)
    assert info.value.code == "TenantRequired" and not w.storage.names("training-data")
    with pytest.raises(Refused) as info:
        w.app.intake.from_upload("acme/in-folder.csv", data, endpoints="beta")
    assert info.value.code == "TenantRequired" and not w.storage.names("training-data")
    run = w.app.intake.from_upload("top.csv", data, endpoints="acme")
    assert run is not None and w.run(run.id).endpoints == ["acme"]
    assert w.storage.info(BlobRef("training-data", "top.csv")).metadata == {"retrainendpoints": "acme"}


@pytest.mark.parametrize(("name", "endpoints", "code"), [
    ("../escape.csv", None, "InvalidRequest"), ("acme/data.json", None, "InvalidRequest"),
    ("/abs.csv", None, "InvalidRequest"), ("top.csv", "Not A Name", "InvalidEndpointName")])
def test_an_upload_with_a_bad_name_or_endpoint_list_is_refused_and_nothing_is_stored(name, endpoints, code):
    w = world()
    with pytest.raises(Refused) as info:
        w.app.intake.from_upload(name, data_text(120).encode(), endpoints=endpoints)
    assert info.value.code == code and not w.storage.blobs and not w.ledger.runs


def test_retrain_from_a_blob_takes_only_the_data_container():
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/d.csv")
    run = w.app.intake.from_blob(ref.path)
    assert run is not None and run.trigger == "http" and run.status == "Training"
    with pytest.raises(Refused) as info:
        w.app.intake.from_blob("models/acme/d.csv")
    assert info.value.code == "OutsideContainer"
    with pytest.raises(NotFound):
        w.app.intake.from_blob("training-data/acme/missing.csv")


# ---- the training service refuses, or is out ----------------------------------------------------------------------
@pytest.mark.parametrize("operation", ["submit", "start"])
def test_a_job_the_service_refuses_ends_failed_with_job_failed(operation):
    w = world()
    w.endpoint("acme")
    w.studio.fail(operation, transient=False)
    run = w.app.intake.accept(w.drop("acme/d.csv"))
    assert run is not None
    stored = w.run(run.id)
    assert stored.status == "Failed" and str(stored.error).startswith("JobRefused")
    assert stored.claimed_by is None and statuses(stored)[-1] == "Failed"
    assert (stored.job_id is not None) == (operation == "start")  # the job id is recorded before the start
    assert w.events.types(run.id) == ["TrainingDataAccepted", "JobFailed"]
    failed = w.events.of(JobFailed, run.id)[0]
    assert failed.status == "Refused" and failed.job_id == stored.job_id
    assert w.app.reconciler.reconcile()["checked"] == 0  # final: nothing left to do


def test_a_submit_failing_past_the_retry_budget_raises_and_the_platforms_retry_submits_once():
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/d.csv")
    w.studio.fail("submit", times=1, transient=True)
    with pytest.raises(FakeServiceError):
        w.app.intake.accept(ref)
    [waiting] = w.ledger.list_runs()
    assert waiting.status == "Accepted" and waiting.rows == 120 and waiting.claimed_by is None
    assert not w.studio.jobs
    run = w.app.intake.accept(ref)  # the platform's retry of the trigger
    assert run is not None and run.id == waiting.id and run.status == "Training"
    assert len(w.studio.jobs) == 1 and [c[0] for c in w.studio.calls].count("submit") == 2
    assert w.events.types(run.id) == ["TrainingDataAccepted", "JobSubmitted"]  # the data announced once


def test_a_start_failing_past_the_budget_leaves_the_job_recorded_and_reconcile_starts_it():
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    ref = w.drop("acme/d.csv")
    w.studio.fail("start", times=1, transient=True)
    with pytest.raises(FakeServiceError):
        w.app.intake.accept(ref)
    [run] = w.ledger.list_runs()
    assert run.status == "Submitted" and run.job_id == "job-1" and phase(w, "job-1") == "NotStarted"
    retried = w.app.intake.accept(ref)
    assert retried is not None and retried.id == run.id and len(w.studio.jobs) == 1  # never a second submit
    summary = w.app.reconciler.reconcile()
    assert summary["started"] == 1
    assert w.run(run.id).status == "Training" and phase(w, "job-1") == "Running"
    assert w.events.types(run.id) == ["TrainingDataAccepted", "JobSubmitted"]


def test_the_first_data_row_is_kept_as_the_smoke_row_without_the_label():
    w = world()
    w.endpoint("acme")
    run = w.app.intake.accept(w.drop("acme/d.csv"))
    assert run is not None
    header, first = data_text(120).splitlines()[:2]
    expected = dict(zip(header.split(","), first.split(","), strict=True))
    expected.pop("income")
    assert w.run(run.id).smoke_row == expected
    assert json.dumps(w.run(run.id).smoke_row)  # stored as plain data
