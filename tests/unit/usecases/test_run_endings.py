"""Every way a run ends leaves four records in agreement - the run as the API shows it, the ledger's attempts,
rejected/, and the events - on the fakes (tests/integration/library/test_run_endings.py's table, and more). One
table: each row sets a run going to one ending; the same checks compare all four."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from shared.decisions import ACTIVE_RUN_STATUSES
from shared.records import BlobRef, iso
from shared.usecases.views import run_view
from tests.fakes.world import World, data_text, world
from tests.unit.usecases.helpers import age_run, land

LONG_AGO = iso(datetime.now(UTC) - timedelta(days=30))
Start = Callable[[World], tuple[str, str | None]]  # -> the run's id, and the file kept in rejected/ (if any)


@dataclass
class Ending:
    status: str
    code: str | None  # how the run's reason starts (None: a success, no reason)
    outcomes: list[str] = field(default_factory=list)  # the ledger's attempts for the run
    rejected: bool = False  # the file is kept in rejected/ with a reason
    events: set[str] = field(default_factory=set)  # event types that name the run
    no_events: set[str] = field(default_factory=set)
    settings: dict[str, str] = field(default_factory=dict)


def trained(w: World, name: str = "end/data.csv", seed: int = 1) -> str:
    return w.trained(name, seed=seed).id


def data_rejected(w: World) -> tuple[str, str | None]:
    run = w.app.intake.accept(w.drop("end/bad.csv", text="age,workclass\n39,State-gov\n"))
    assert run is not None
    return run.id, "training-data/end/bad.csv"


def unknown_labels(w: World) -> tuple[str, str | None]:
    text = data_text(120).replace("<=50K", "no").replace(">50K", "yes")
    run = w.app.intake.accept(w.drop("end/labels.csv", text=text))
    assert run is not None
    return run.id, "training-data/end/labels.csv"


def version_gone(w: World) -> tuple[str, str | None]:
    ref = w.drop("end/moving.csv")
    read = w.storage.chunks

    def replaced(blob: BlobRef, etag: str | None = None) -> Iterator[bytes]:
        w.storage.put(blob, data_text(130, seed=9).encode())
        yield from read(blob, etag)

    w.storage.chunks = replaced  # type: ignore[method-assign, assignment]
    run = w.app.intake.accept(ref)
    assert run is not None
    return run.id, None


def job_refused(w: World) -> tuple[str, str | None]:
    w.studio.fail("start", transient=False)
    run = w.app.intake.accept(w.drop("end/refused.csv"))
    assert run is not None
    return run.id, None


def job_failed(w: World) -> tuple[str, str | None]:
    run = w.app.intake.accept(w.drop("end/oom.csv"))
    assert run is not None and run.job_id
    w.studio.finish(run.job_id, "Failed", "the experiment ran out of memory")
    w.app.reconciler.reconcile()
    return run.id, None


def job_cancelled(w: World) -> tuple[str, str | None]:
    run = w.app.intake.accept(w.drop("end/cancel.csv"))
    assert run is not None and run.job_id
    w.studio.finish(run.job_id, "Cancelled")
    w.app.reconciler.reconcile()
    return run.id, None


def deadline(w: World) -> tuple[str, str | None]:
    w.studio.finish_on_start = False
    run = w.app.intake.accept(w.drop("end/slow.csv"))
    assert run is not None
    age_run(w, run.id, submitted_at=LONG_AGO)
    w.app.reconciler.reconcile()
    return run.id, None


def below_gate(w: World) -> tuple[str, str | None]:
    run_id = trained(w)
    land(w, w.run(run_id))
    return run_id, None


def no_improvement(w: World) -> tuple[str, str | None]:
    first = trained(w, "end/first.csv", 1)
    land(w, w.run(first))
    w.studio.metrics = {"AUC": 0.86, "Accuracy": 0.8}
    second = trained(w, "end/second.csv", 2)
    land(w, w.run(second))
    return second, None


def deployed(w: World) -> tuple[str, str | None]:
    run_id = trained(w)
    land(w, w.run(run_id))
    return run_id, None


def superseded(w: World) -> tuple[str, str | None]:
    older, newer = trained(w, "end/older.csv", 1), trained(w, "end/newer.csv", 2)
    land(w, w.run(newer))
    land(w, w.run(older))
    return older, None


def coalesced(w: World) -> tuple[str, str | None]:
    older, _ = w.drop("end/burst-1.csv", seed=1), w.drop("end/burst-2.csv", seed=2)
    run = w.app.intake.accept(older)
    assert run is not None
    return run.id, None


def job_cancelled_for_newer_data(w: World) -> tuple[str, str | None]:
    w.studio.finish_on_start = False
    older = w.app.intake.accept(w.drop("end/older.csv", seed=1))
    w.app.intake.accept(w.drop("end/newer.csv", seed=2))
    assert older is not None
    return older.id, None


def rolled_back(w: World) -> tuple[str, str | None]:
    run_id = trained(w)
    w.studio.broken_models.add(str(w.run(run_id).model_path))
    land(w, w.run(run_id))
    return run_id, None


def put_refused(w: World) -> tuple[str, str | None]:
    run_id = trained(w)
    w.studio.fail("put_in_service", transient=False, input_refused=True)
    land(w, w.run(run_id))
    return run_id, None


def partially_deployed(w: World) -> tuple[str, str | None]:
    w.endpoint("part")
    run = w.trained("both.csv")  # top level: RETRAIN_ENDPOINTS=end,part
    w.studio.fail("put_in_service", transient=False, input_refused=True)  # the first endpoint ("end") refuses it
    land(w, run)
    return run.id, None


def approval_rejected(w: World) -> tuple[str, str | None]:
    run_id = trained(w)
    land(w, w.run(run_id))
    w.app.approvals.reject(run_id, "carol", "not this week")
    return run_id, None


def approval_expired(w: World) -> tuple[str, str | None]:
    run_id = trained(w)
    land(w, w.run(run_id))
    stored = w.ledger.runs[run_id]
    age_run(w, run_id, transitions=[dict(t, at=LONG_AGO) if t["status"] == "AwaitingApproval" else t
                                    for t in stored.transitions])
    w.app.reconciler.reconcile()
    return run_id, None


def approval_superseded(w: World) -> tuple[str, str | None]:
    older, newer = trained(w, "end/older.csv", 1), trained(w, "end/newer.csv", 2)
    land(w, w.run(older))
    land(w, w.run(newer))
    return older, None


def hand_dropped(w: World, name: str, data: bytes, evaluation: bytes | None = None) -> BlobRef:
    ref = BlobRef("models", name)
    if evaluation is not None:
        w.storage.put(BlobRef("models", name.rsplit("/", 1)[0] + "/evaluation.csv"), evaluation)
    w.storage.put(ref, data)
    return ref


def hand_dropped_deployed(w: World) -> tuple[str, str | None]:
    result = w.app.model_landing.landed(hand_dropped(w, "end/hand.ilearner", b"a model"))
    assert result is not None
    return result.run_id, None


def hand_dropped_unservable(w: World) -> tuple[str, str | None]:
    ref = hand_dropped(w, "end/broken.ilearner", b"a model that will not load")
    w.studio.broken_models.add(ref.path)
    result = w.app.model_landing.landed(ref)
    assert result is not None
    return result.run_id, ref.path


def hand_dropped_empty(w: World) -> tuple[str, str | None]:
    result = w.app.model_landing.landed(hand_dropped(w, "end/empty.ilearner", b""))
    assert result is not None
    return result.run_id, "models/end/empty.ilearner"


def hand_dropped_nowhere(w: World) -> tuple[str, str | None]:
    result = w.app.model_landing.landed(hand_dropped(w, "ghost/m.ilearner", b"a model"))
    assert result is not None
    return result.run_id, "models/ghost/m.ilearner"


def hand_dropped_bad_evaluation(w: World) -> tuple[str, str | None]:
    ref = hand_dropped(w, "end/eval/model.ilearner", b"a model", evaluation=b"AUC,Accuracy\nhigh,0.9\n")
    result = w.app.model_landing.landed(ref)
    assert result is not None
    return result.run_id, ref.path


MANUAL = {"RETRAIN_APPROVAL": "manual"}
CASES: dict[str, tuple[Start, Ending]] = {
    "data-rejected": (data_rejected, Ending("Rejected", "MissingColumns", rejected=True,
                                            events={"TrainingDataRejected"}, no_events={"JobSubmitted"})),
    "unknown-labels": (unknown_labels, Ending("Rejected", "UnknownLabel", rejected=True,
                                              events={"TrainingDataRejected"}, no_events={"JobSubmitted"})),
    "version-gone": (version_gone, Ending("Cancelled", "VersionGone", no_events={"TrainingDataAccepted",
                                                                                   "JobSubmitted"})),
    "job-refused": (job_refused, Ending("Failed", "JobRefused", events={"TrainingDataAccepted", "JobFailed"},
                                        no_events={"JobSubmitted"})),
    "job-failed": (job_failed, Ending("Failed", "JobFailed", events={"JobSubmitted", "JobFailed"},
                                      no_events={"JobFinished"})),
    "job-cancelled": (job_cancelled, Ending("Cancelled", "JobFailed", events={"JobSubmitted", "JobFailed"},
                                            no_events={"JobFinished"})),
    "deadline-exceeded": (deadline, Ending("Failed", "DeadlineExceeded", events={"JobSubmitted", "JobFailed"},
                                           no_events={"JobFinished"})),
    "below-gate": (below_gate, Ending("BelowGate", "BelowGate", ["Rejected"], events={"JobFinished", "ModelRejected"},
                                      no_events={"EndpointUpdated"}, settings={"RETRAIN_GATE_MINIMUM": "0.9"})),
    "no-improvement": (no_improvement, Ending("BelowGate", "Rejected", ["Rejected"], events={"ModelRejected"},
                                              no_events={"EndpointUpdated"},
                                              settings={"RETRAIN_GATE_MIN_IMPROVEMENT": "0.05"})),
    "deployed": (deployed, Ending("Deployed", None, ["Deployed"], events={"JobFinished", "EndpointUpdated"},
                                  no_events={"ModelRejected"})),
    "superseded": (superseded, Ending("Superseded", "Superseded", ["Superseded"], events={"JobFinished"},
                                      no_events={"EndpointUpdated"})),
    "coalesced": (coalesced, Ending("Superseded", "Superseded", events={"RunSuperseded"}, no_events={
        "JobSubmitted"}, settings={"RETRAIN_COALESCE_SECONDS": "0.05"})),
    "job-cancelled-for-newer-data": (job_cancelled_for_newer_data, Ending(
        "Superseded", "Superseded", events={"JobSubmitted", "RunSuperseded"}, no_events={"JobFinished"})),
    "rolled-back": (rolled_back, Ending("RolledBack", "RolledBack", ["RolledBack"],
                                        events={"EndpointUpdateFailed", "EndpointRolledBack"},
                                        no_events={"EndpointUpdated"})),
    "put-refused": (put_refused, Ending("Failed", "Failed", ["Failed"], events={"EndpointUpdateFailed"},
                                        no_events={"EndpointUpdated"})),
    "partially-deployed": (partially_deployed, Ending("PartiallyDeployed", "Failed", ["Deployed", "Failed"],
                                                      events={"EndpointUpdated", "EndpointUpdateFailed"},
                                                      settings={"RETRAIN_ENDPOINTS": "end,part",
                                                                "RETRAIN_PATCH_CONCURRENCY": "1",
                                                                "RETRAIN_FANOUT_MODE": "inline"})),
    "approval-rejected": (approval_rejected, Ending("Rejected", "RejectedByOperator", events={
        "RunAwaitingApproval", "RunRejected"}, no_events={"EndpointUpdated", "RunApproved"}, settings=MANUAL)),
    "approval-expired": (approval_expired, Ending("Cancelled", "ApprovalExpired", events={
        "RunAwaitingApproval", "RunExpired"}, no_events={"EndpointUpdated"}, settings=MANUAL)),
    "approval-superseded": (approval_superseded, Ending("Superseded", "Superseded", events={
        "RunAwaitingApproval", "RunSuperseded"}, no_events={"EndpointUpdated"}, settings=MANUAL)),
    "hand-dropped-deployed": (hand_dropped_deployed, Ending("Deployed", None, ["Deployed"],
                                                            events={"EndpointUpdated"})),
    "hand-dropped-unservable": (hand_dropped_unservable, Ending("Rejected", "ModelNotServable", ["RolledBack"],
                                                                rejected=True, events={"ModelRejected"},
                                                                no_events={"EndpointUpdated"})),
    "hand-dropped-empty": (hand_dropped_empty, Ending("Rejected", "EmptyModel", rejected=True,
                                                      events={"ModelRejected"})),
    "hand-dropped-nowhere": (hand_dropped_nowhere, Ending("Rejected", "NoSuchEndpoint", rejected=True,
                                                          events={"ModelRejected"})),
    "hand-dropped-bad-evaluation": (hand_dropped_bad_evaluation, Ending("Rejected", "BadEvaluation", rejected=True,
                                                                        events={"ModelRejected"},
                                                                        no_events={"EndpointUpdated"})),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_ending_agrees_across_the_run_the_ledger_rejected_and_the_events(case):
    start, expected = CASES[case]
    w = world(**expected.settings)
    tenant = w.endpoint("end")
    run_id, source = start(w)
    shown = run_view(w.app.views.run(run_id))  # what GET /api/runs/{id} answers
    assert shown["status"] == expected.status, shown
    assert shown["status"] not in ACTIVE_RUN_STATUSES and w.run(run_id).claimed_by is None
    if expected.code is None:
        assert shown["error"] is None
    else:
        assert str(shown["error"]).startswith(f"{expected.code}"), shown["error"]
    last = shown["transitions"][-1]
    assert last["status"] == expected.status
    assert (last.get("reason") is None) == (expected.code is None)
    endpoints = {tenant, *w.settings.targets[0].endpoints}
    attempts = [d for ep in endpoints for d in w.ledger.history("default", ep) if d.run_id == run_id]
    assert sorted(d.outcome for d in attempts) == sorted(expected.outcomes)
    assert sum(shown["outcomes"].values()) == len(expected.outcomes)
    for d in attempts:  # the pointer names the run exactly where it deployed
        cur = w.ledger.current("default", d.endpoint)
        assert cur is not None and (cur.run_id == run_id) == (d.outcome == "Deployed")
        assert cur.lease_owner is None
    if source is not None:
        container, _, name = source.partition("/")
        kept = w.storage.exists(BlobRef("rejected", source))
        reason = w.storage.exists(BlobRef("rejected", source + ".reason.json"))
        assert kept == reason == expected.rejected
        assert w.storage.exists(BlobRef(container, name)) != kept
    types = set(w.events.types(run_id))
    assert expected.events <= types and not (expected.no_events & types), types
    assert not w.events.waiting
