"""The races, as deterministic interleavings on the fakes: a competing call is run at an exact ledger write
(FakeLedger.on_write) or at an exact wait (a virtual clock), never by thread timing. Same-second files, a promotion
delivered twice, parallel endpoint creation, parallel rollbacks and patches, a stale etag under a run change,
takeover of a dead claim and of a stalled deployment's lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import shared.usecases.claims as claims_module
import shared.usecases.intake as intake_module
import shared.usecases.operations as operations_module
from shared.errors import AlreadyExists, NotFound, Refused, RunMoved, Stale
from shared.events import EndpointRolledBack, EndpointUpdated, JobFinished
from shared.ports.ledger import CHANGE_TRIES
from shared.ports.serving import EndpointInfo
from shared.records import BlobRef, PromoteResult, Record, Run, iso, now_iso, run_id_for
from tests.fakes.world import World, data_text, world
from tests.unit.usecases.helpers import age_run, at_write, land, virtual_time

CREATED = "experiment/model.ilearner"


def serving(w: World, endpoint: str = "acme") -> str | None:
    return w.studio.endpoints[endpoint].model_path


# ---- newest data wins, within one second ---------------------------------------------------------------------
@pytest.mark.parametrize("tie", ["taken-in-order", "same-millisecond"])
@pytest.mark.parametrize("landing", ["newer-model-first", "older-model-first"])
def test_of_two_files_landing_in_one_second_the_later_in_the_total_order_wins(landing, tie):
    w = world(RETRAIN_CANCEL_SUPERSEDED_JOBS="false")  # both jobs run: the race is at deployment
    w.endpoint("acme")
    w.storage.clock.tick()
    refs = [BlobRef("training-data", f"acme/{n}.csv") for n in ("a", "b")]
    for i, ref in enumerate(refs):  # no tick between them: one Last-Modified second
        w.storage.put(ref, data_text(120, seed=i).encode())
    runs = [w.app.intake.accept(ref) for ref in refs]
    assert all(r is not None for r in runs)
    a, b = (w.run(r.id) for r in runs if r is not None)
    assert a.data_time == b.data_time
    if tie == "same-millisecond":  # taken in at the same instant too: the run id decides
        age_run(w, b.id, created_at=a.created_at)
        a, b = w.run(a.id), w.run(b.id)
    older, newer = sorted([a, b], key=lambda r: r.order)
    assert older.order != newer.order
    for run in (older, newer):
        w.studio.finish(str(run.job_id))
    first, second = (newer, older) if landing == "newer-model-first" else (older, newer)
    land(w, w.run(first.id))
    late = land(w, w.run(second.id))
    assert serving(w) == newer.model_path
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.run_id == newer.id and cur.data_order == newer.order
    outcomes = {d.run_id: d.outcome for d in w.ledger.history("default", "acme") if d.run_id}
    assert outcomes[newer.id] == "Deployed"
    assert outcomes[older.id] == ("Superseded" if landing == "newer-model-first" else "Deployed")
    assert late.status == "Done"


# ---- a promotion delivered twice ---------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["Trained", "Deploying", "Deployed"])
def test_a_second_delivery_at_any_step_of_the_first_deploys_once(point):
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    second: list[PromoteResult] = []
    at_write(w, "run.replace", lambda record: second.append(land(w, w.run(run.id))),
             when=lambda record: isinstance(record, Run) and record.status == point)
    first = land(w, w.run(run.id))
    assert second and first.status == second[0].status == "Done"
    assert w.run(run.id).status == "Deployed" and serving(w) == run.model_path
    assert [(d.run_id, d.outcome) for d in w.ledger.history("default", "acme")] == [(run.id, "Deployed"),
                                                                                    (None, "Created")]
    assert [c[0] for c in w.studio.calls].count("put_in_service") == 1
    assert len(w.events.of(EndpointUpdated, run.id)) == 1 and len(w.events.of(JobFinished, run.id)) == 1
    assert [t["status"] for t in w.run(run.id).transitions].count("Deployed") == 1


def test_a_deployment_stalled_past_its_lease_is_taken_over_and_both_record_one_outcome():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    taken: list[PromoteResult] = []

    def stall_then_redeliver(record: Record) -> None:
        lease = w.ledger.pointers[("default", "acme")]
        lease.lease_until = time.time() - 1  # the first invocation stalled past its lease before recording
        taken.append(land(w, w.run(run.id)))

    at_write(w, "attempt.finish", stall_then_redeliver)
    first = land(w, w.run(run.id))
    assert taken and taken[0].status == "Done" and first.status == "Done"
    assert w.run(run.id).status == "Deployed" and serving(w) == run.model_path
    [attempt] = [d for d in w.ledger.history("default", "acme") if d.run_id == run.id]
    assert attempt.outcome == "Deployed"
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.run_id == run.id and cur.lease_owner is None
    assert [c[0] for c in w.studio.calls].count("put_in_service") == 2  # the taker did the swap again


def test_an_operators_call_while_a_deployment_holds_the_endpoint_is_busy_not_queued_forever():
    w = world(RETRAIN_INTERACTIVE_WAIT_SECONDS="0")
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    w.ledger.acquire("default", "acme", "a-deployment-in-progress", seconds=30)
    for call in (lambda: w.app.operations.patch_model(None, "acme", str(run.model_path)),
                 lambda: w.app.operations.rollback(None, "acme")):
        with pytest.raises(Refused) as info:
            call()
        assert info.value.code == "EndpointBusy" and info.value.conflict
    assert "put_in_service" not in [c[0] for c in w.studio.calls]


# ---- parallel endpoint creation ----------------------------------------------------------------------------------
def test_the_second_create_of_a_name_after_the_first_recorded_it_is_a_conflict():
    w = world()
    results: list[EndpointInfo | Refused] = []

    def second_create(record: Record) -> None:
        try:
            results.append(w.app.operations.add_endpoint("once"))
        except Refused as exc:
            results.append(exc)

    # the second call arrives as the first takes the new endpoint's lease (its create row is written)
    at_write(w, "lease.acquire", second_create)
    first = w.app.operations.add_endpoint("once")
    assert first.name == "once"
    [loser] = results
    assert isinstance(loser, Refused) and loser.code == "EndpointExists" and loser.conflict
    assert [(d.operation, d.outcome) for d in w.ledger.history("default", "once")] == [("create", "Created")]
    assert [c for c in w.studio.calls if c[0] == "create_endpoint"] == [("create_endpoint", "once")] * 2


def test_when_the_service_tells_two_parallel_creates_they_created_it_only_the_recorded_one_did(monkeypatch):
    """Issue 21: ten parallel POST /api/endpoints of one name - two callers got 201 when the service answered both
    with success (the emulator's check-then-create; a retried PUT that meets 409 reads as its own). The caller
    whose create row is the ledger's created it; every other one is told EndpointExists."""
    w = world()
    real = w.studio.create_endpoint
    barrier = threading.Barrier(4)

    def not_atomic(name: str) -> EndpointInfo:
        barrier.wait(5)  # all four are past the service's existence check
        try:
            return real(name)
        except AlreadyExists:
            info = w.studio.info(name)
            assert info is not None
            return info  # as a service that answers every PUT of the name with success

    monkeypatch.setattr(w.studio, "create_endpoint", not_atomic)
    results: list[object] = []

    def create() -> None:
        try:
            results.append(w.app.operations.add_endpoint("many"))
        except Refused as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    created = [r for r in results if isinstance(r, EndpointInfo)]
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(created) == 1 and len(refused) == 3
    assert all(r.code == "EndpointExists" and r.conflict for r in refused)
    assert [(d.operation, d.outcome) for d in w.ledger.history("default", "many")] == [("create", "Created")]


def test_a_create_that_finds_the_name_taken_waits_for_the_creator_to_record_it(monkeypatch):
    """The second call finds the endpoint on the service before the first recorded it: it waits (a virtual clock)
    and, once the creator's record lands, answers EndpointExists rather than adopting it."""
    w = world()
    paused, go, recorded = threading.Event(), threading.Event(), threading.Event()
    creator: list[threading.Thread] = []
    outcome: list[object] = []

    def hook(kind: str, record: Record) -> None:
        if not creator or threading.current_thread() is not creator[0]:
            return
        if kind == "deployment.add":  # created on the service; its create row is next
            paused.set()
            assert go.wait(10)
        elif kind == "lease.acquire":  # the create row is written
            recorded.set()

    def let_the_creator_record(seconds: float) -> None:
        if not go.is_set():
            go.set()
            assert recorded.wait(10)

    w.ledger.on_write = hook
    clock = virtual_time(monkeypatch, operations_module)
    clock.on_sleep = let_the_creator_record

    def create() -> None:
        outcome.append(w.app.operations.add_endpoint("race"))

    creator.append(threading.Thread(target=create))
    creator[0].start()
    assert paused.wait(10)
    with pytest.raises(Refused) as info:
        w.app.operations.add_endpoint("race")
    creator[0].join(10)
    assert info.value.code == "EndpointExists" and isinstance(outcome[0], EndpointInfo)
    assert clock.slept and sum(clock.slept) < 5  # it waited for the record, not for the adoption deadline
    assert [d.operation for d in w.ledger.history("default", "race")] == ["create"]


# ---- parallel rollbacks and patches ------------------------------------------------------------------------------
def patched_twice(w: World) -> tuple[Run, Run]:
    w.endpoint("acme")
    first, second = w.trained("acme/1.csv", seed=1), w.trained("acme/2.csv", seed=2)
    for run in (first, second):
        assert w.app.operations.patch_model(None, "acme", str(run.model_path)).outcome == "Deployed"
    return first, second


def test_two_rollbacks_at_once_go_back_one_step_not_two():
    w = world()
    first, second = patched_twice(w)
    other: list[str] = []
    # the second request arrives after the first read what serves, before it takes the lease
    at_write(w, "lease.acquire", lambda record: other.append(w.app.operations.rollback(None, "acme").outcome))
    mine = w.app.operations.rollback(None, "acme")
    assert sorted([mine.outcome, *other]) == ["Deployed", "Unchanged"]
    assert serving(w) == first.model_path
    assert [d.operation for d in w.ledger.history("default", "acme")].count("rollback") == 1
    assert len([e for e in w.events.of(EndpointRolledBack) if e.endpoint == "acme"]) == 1
    cur = w.ledger.current("default", "acme")
    assert cur is not None and cur.lease_owner is None and cur.model_path == first.model_path
    del second


def test_two_rollbacks_to_the_same_deployment_at_once_make_one_change():
    w = world()
    patched_twice(w)
    other: list[str] = []
    at_write(w, "lease.acquire", lambda record: other.append(
        w.app.operations.rollback(None, "acme", to="create").outcome))
    mine = w.app.operations.rollback(None, "acme", to="create")
    assert sorted([mine.outcome, *other]) == ["Deployed", "Unchanged"] and serving(w) == CREATED


def test_two_patches_of_one_model_at_once_do_the_work_once():
    w = world()
    w.endpoint("acme")
    run = w.trained("acme/d.csv")
    other: list[str] = []
    at_write(w, "lease.acquire", lambda record: other.append(
        w.app.operations.patch_model(None, "acme", str(run.model_path)).outcome))
    mine = w.app.operations.patch_model(None, "acme", str(run.model_path))
    assert sorted([mine.outcome, *other]) == ["Deployed", "Unchanged"]
    assert [c[0] for c in w.studio.calls].count("put_in_service") == 1
    assert [d.operation for d in w.ledger.history("default", "acme")] == ["patch", "create"]


# ---- a stale etag under a run change (Ledger.change) ---------------------------------------------------------------
def training_run(w: World) -> Run:
    w.endpoint("acme")
    w.studio.finish_on_start = False
    run = w.app.intake.accept(w.drop("acme/d.csv"))
    assert run is not None
    return w.run(run.id)


def test_a_change_made_on_a_stale_copy_is_made_again_on_the_fresh_one():
    w = world()
    run = training_run(w)
    at_write(w, "run.replace", lambda record: w.ledger.change(w.run(run.id), rows=7))  # someone else's write
    w.ledger.change(run, "Trained", metrics={"AUC": 0.9})
    stored = w.run(run.id)
    assert (stored.status, stored.metrics, stored.rows) == ("Trained", {"AUC": 0.9}, 7)  # both changes kept
    assert run.etag == stored.etag and [t["status"] for t in stored.transitions].count("Trained") == 1


def test_a_change_someone_else_made_already_keeps_theirs():
    w = world()
    run = training_run(w)
    at_write(w, "run.replace", lambda record: w.ledger.change(w.run(run.id), "Trained", metrics={"AUC": 0.8}))
    w.ledger.change(run, "Trained", metrics={"AUC": 0.9})
    stored = w.run(run.id)
    assert stored.status == "Trained" and stored.metrics == {"AUC": 0.8}
    assert [t["status"] for t in stored.transitions].count("Trained") == 1 and run.metrics == {"AUC": 0.8}


def test_a_change_to_a_run_that_moved_elsewhere_raises_run_moved_with_the_run_as_it_is():
    w = world()
    run = training_run(w)
    at_write(w, "run.replace", lambda record: w.ledger.change(w.run(run.id), "Failed", "JobFailed: meanwhile"))
    with pytest.raises(RunMoved) as info:
        w.ledger.change(run, "Trained")
    moved = info.value.run
    assert isinstance(moved, Run) and moved.status == "Failed" and w.run(run.id).status == "Failed"


def test_a_claim_on_a_stale_copy_is_refused_and_a_run_that_keeps_changing_gives_up():
    w = world()
    run = training_run(w)
    at_write(w, "run.replace", lambda record: w.ledger.change(w.run(run.id), rows=1))
    with pytest.raises(Stale):
        w.ledger.change(run, if_unchanged=True, claimed_by="me", claimed_until=time.time() + 30)
    assert w.run(run.id).claimed_by is None
    writes: list[str] = []

    def always(kind: str, record: Record) -> None:
        writes.append(kind)
        w.ledger.change(w.run(run.id), rows=len(writes))

    w.ledger.on_write = always
    with pytest.raises(Stale):
        w.ledger.change(w.run(run.id), "Trained")
    assert len(writes) == CHANGE_TRIES and w.run(run.id).status == "Training"

    def deleted(kind: str, record: Record) -> None:
        w.ledger.runs.pop(run.id, None)

    w.ledger.on_write = deleted
    with pytest.raises(NotFound):
        w.ledger.change(run, "Trained")


# ---- takeover of a dead claim ------------------------------------------------------------------------------------
def accepted_by_a_dead_invocation(w: World, ref: BlobRef) -> Run:
    """The run row as an invocation killed right after inserting it leaves it: Accepted, its claim still alive."""
    info = w.storage.info(ref)
    run = Run(id=run_id_for(ref.path, info.etag), target="?", data_path=ref.path, data_etag=info.etag,
              data_time=iso(info.last_modified), claimed_by="a-killed-invocation",
              claimed_until=time.time() + w.settings.lease_seconds,
              transitions=[{"status": "Accepted", "at": now_iso()}])
    created, _ = w.ledger.create_run(run)
    return created


def test_a_redelivery_takes_over_a_dead_invocations_claim_once_it_lapsed(monkeypatch):
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/d.csv")
    dead = accepted_by_a_dead_invocation(w, ref)
    clock = virtual_time(monkeypatch, intake_module)
    run = w.app.intake.accept(ref)  # the platform's retry: the claim is alive, it waits for it to lapse
    assert run is not None and run.id == dead.id and run.status == "Training"
    assert 25 <= sum(clock.slept) <= w.settings.lease_seconds + 5
    assert len(w.studio.jobs) == 1 and w.run(run.id).claimed_by is None
    assert w.events.types(run.id) == ["TrainingDataAccepted", "JobSubmitted"]


def test_a_redelivery_while_the_holder_is_alive_returns_what_the_holder_did(monkeypatch):
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/d.csv")
    dead = accepted_by_a_dead_invocation(w, ref)
    holder_claim = dead.claimed_by

    def the_holder_finishes(seconds: float) -> None:  # while the redelivery waits, the holder rejects the file
        if w.run(dead.id).status == "Accepted":
            w.ledger.change(w.run(dead.id), "Rejected", "MissingColumns: by the holder", release_claim=True)

    clock = virtual_time(monkeypatch, intake_module)
    clock.on_sleep = the_holder_finishes
    run = w.app.intake.accept(ref)
    assert run is not None and run.status == "Rejected" and run.error == "MissingColumns: by the holder"
    assert len(clock.slept) == 1 and not w.studio.jobs and holder_claim is not None


def test_an_invocation_whose_claim_lapsed_mid_read_notices_and_leaves_the_run_to_its_taker(monkeypatch):
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/d.csv", rows=400)
    clock = virtual_time(monkeypatch, intake_module, claims_module)
    read = w.storage.chunks
    taker: list[Run | None] = []
    stalled: list[bool] = []

    def stalled_mid_read(blob: BlobRef, etag: str | None = None) -> Iterator[bytes]:
        data = b"".join(read(blob, etag))
        yield data[: len(data) // 2]
        if not stalled:  # the first reader stalls here past its claim; a redelivery takes the run over
            stalled.append(True)
            clock.advance(w.settings.lease_seconds + 10)
            taker.append(w.app.intake.accept(ref))
        yield data[len(data) // 2:]

    monkeypatch.setattr(w.storage, "chunks", stalled_mid_read)
    slow = w.app.intake.accept(ref)
    [took] = taker
    assert took is not None and took.status == "Training"
    assert slow is not None and slow.id == took.id and slow.status == "Training" and slow.job_id == took.job_id
    assert len(w.studio.jobs) == 1
    assert w.events.types(took.id) == ["TrainingDataAccepted", "JobSubmitted"]


def test_an_invocation_whose_claim_was_taken_over_never_submits():
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/d.csv")

    def taken_over(record: Record) -> None:  # it stalled past its claim; another invocation claimed the run
        assert isinstance(record, Run)
        age_run(w, record.id, claimed_until=time.time() - 1)
        w.ledger.change(w.run(record.id), if_unchanged=True, claimed_by="the-taker", claimed_until=time.time() + 30)

    at_write(w, "run.replace", taken_over, when=lambda record: isinstance(record, Run) and record.rows is not None)
    w.app.intake.accept(ref)
    [run] = w.ledger.list_runs()
    assert not w.studio.jobs and run.claimed_by == "the-taker" and run.status == "Accepted"


def test_an_invocation_whose_claim_lapsed_during_the_submit_returns_the_takers_run():
    w = world()
    w.endpoint("acme")
    w.studio.finish_on_start = False
    ref = w.drop("acme/d.csv")
    taker: list[Run | None] = []

    def slow_submit(record: Record) -> None:
        assert isinstance(record, Run)
        age_run(w, record.id, claimed_until=time.time() - 1)  # the submit took longer than the claim
        taker.append(w.app.intake.accept(ref))

    at_write(w, "run.replace", slow_submit, when=lambda record: isinstance(record, Run)
             and record.status == "Submitted")
    slow = w.app.intake.accept(ref)
    [took] = taker
    assert took is not None and took.status == "Training"
    assert slow is not None and slow.id == took.id and slow.job_id == took.job_id
    started = [j for j in w.studio.jobs.values() if j.phase != "NotStarted"]
    assert len(started) == 1
