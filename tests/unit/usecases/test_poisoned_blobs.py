"""Blobs the host gave up on (issue 21: a file whose trigger failed poisonBlobThreshold times ended only in the
host's poison queue - never taken, never explained). The poison message is taken by the app: the file is taken
again, or tried again later from the work queue, and at last recorded as not taken; never dropped."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events import ModelRejected, TrainingDataRejected
from shared.records import BlobRef
from shared.usecases.poisoned_blobs import RETRY_DELAYS
from tests.fakes.studio import FakeServiceError
from tests.fakes.world import World, world


def poison(ref: BlobRef, function: str = "training_data_landed") -> dict[str, Any]:
    """The host's poison message for a blob (its shape: the storage extension's)."""
    return {"Type": "BlobTrigger", "FunctionId": f"Host.Functions.{function}", "BlobType": "BlockBlob",
            "ContainerName": ref.container, "BlobName": ref.name, "ETag": '"0x1"'}


def runs_of(w: World, ref: BlobRef) -> list:
    return [r for r in w.ledger.runs.values() if ref.path in (r.data_path, r.model_path)]


def queued(w: World) -> list[tuple[dict[str, Any], float]]:
    import json

    return [(json.loads(m.text), m.visible_at - w.queue.now()) for m in w.queue.messages.values()]


def storage_down(w: World, monkeypatch: pytest.MonkeyPatch, notes: bool = False) -> None:
    """Taking the file fails as an outage would; recording it (a note in rejected/) too when `notes`."""
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise FakeServiceError("storage did not answer", transient=True)

    monkeypatch.setattr(w.app.intake, "accept", fail)
    monkeypatch.setattr(w.app.model_landing, "landed", fail)
    if notes:
        monkeypatch.setattr(w.storage, "note_unreadable", fail)


def test_a_poisoned_data_file_is_taken_again_and_trains_once():
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/lost.csv")
    assert w.app.poisoned_blobs.handle(poison(ref)) == "taken"
    assert w.app.poisoned_blobs.handle(poison(ref)) == "taken"  # the message twice: the same run
    runs = runs_of(w, ref)
    assert len(runs) == 1 and runs[0].status == "Training" and runs[0].trigger == "poison"
    assert len(w.studio.jobs) == 1


def test_a_poisoned_file_that_still_cannot_be_taken_is_tried_later_then_recorded_never_dropped(monkeypatch):
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/stuck.csv")
    storage_down(w, monkeypatch)
    assert w.app.poisoned_blobs.handle(poison(ref)) == "retrying"
    [(body, delay)] = queued(w)
    assert body == {"kind": "poisoned-blob", "blob": {"ContainerName": ref.container, "BlobName": ref.name},
                    "tries": 1} and delay == pytest.approx(RETRY_DELAYS[0], abs=1)
    for tries in range(1, len(RETRY_DELAYS)):
        assert w.app.poisoned_blobs.handle(body["blob"], tries) == "retrying"
    delays = sorted(d for _, d in queued(w))
    assert delays == pytest.approx(sorted(RETRY_DELAYS), abs=1)  # growing, bounded
    assert w.app.poisoned_blobs.handle(body["blob"], len(RETRY_DELAYS)) == "recorded"
    [run] = runs_of(w, ref)
    assert run.status == "Rejected" and run.error.startswith("NotTaken: the app could not take this file")
    assert "storage did not answer" in run.error
    [event] = w.events.of(TrainingDataRejected)
    assert event.code == "NotTaken" and event.reason_at
    [note] = w.storage.rejected(5)
    assert note.source == ref.path and note.code == "NotTaken"
    assert w.storage.exists(ref)  # it stays where the user put it
    assert w.app.poisoned_blobs.handle(body["blob"], len(RETRY_DELAYS)) == "recorded"  # once only
    assert len(w.storage.rejected(5)) == 1 and len(runs_of(w, ref)) == 1


def test_a_later_try_takes_the_file_once_the_outage_is_over(monkeypatch):
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/late.csv")
    with monkeypatch.context() as m:
        storage_down(w, m)
        assert w.app.poisoned_blobs.handle(poison(ref)) == "retrying"
    [(body, _)] = queued(w)
    assert w.app.poisoned_blobs.handle(body["blob"], body["tries"]) == "taken"
    assert [r.status for r in runs_of(w, ref)] == ["Training"]


def test_a_poisoned_name_the_sdk_cannot_read_is_recorded_with_its_reason():
    w = world()
    ref = BlobRef(w.settings.data_container, "acme/a\\b.csv")
    assert w.app.poisoned_blobs.handle(poison(ref)) == "taken"
    [run] = runs_of(w, ref)
    assert run.status == "Rejected" and run.error.startswith("UnreadableName")
    assert [e.code for e in w.events.of(TrainingDataRejected)] == ["UnreadableName"]


def test_a_poisoned_model_is_landed_again(monkeypatch):
    w = world()
    ref = BlobRef(w.settings.models_container, "acme/notes.txt")
    w.storage.put(ref, b"not a model")
    assert w.app.poisoned_blobs.handle(poison(ref, "model_landed")) == "taken"
    assert [e.code for e in w.events.of(ModelRejected)] == ["UnsupportedFileType"]
    with monkeypatch.context() as m:
        storage_down(w, m)
        other = BlobRef(w.settings.models_container, "acme/m.ilearner")
        w.storage.put(other, b"model")
        assert w.app.poisoned_blobs.handle(poison(other, "model_landed"), len(RETRY_DELAYS)) == "recorded"
    assert [e.code for e in w.events.of(ModelRejected)] == ["UnsupportedFileType", "NotTaken"]


@pytest.mark.parametrize("message", [{}, {"ContainerName": "training-data"}, {"BlobName": "x.csv"},
                                     {"ContainerName": 3, "BlobName": "x.csv"},
                                     {"ContainerName": "elsewhere", "BlobName": "x.csv"}])
def test_a_message_that_names_no_file_of_the_app_is_logged_and_dropped(message, caplog):
    w = world()
    assert w.app.poisoned_blobs.handle(message) == "ignored"
    assert not w.ledger.runs and not queued(w)
    assert "poison" in caplog.text or "takes no file" in caplog.text


def test_when_even_the_record_cannot_be_written_the_file_is_tried_again_later(monkeypatch):
    w = world()
    ref = w.drop("acme/never.csv")
    storage_down(w, monkeypatch, notes=True)
    blob = poison(ref)
    assert w.app.poisoned_blobs.handle(blob, len(RETRY_DELAYS)) == "retrying"
    [(body, delay)] = queued(w)
    assert body["tries"] == len(RETRY_DELAYS) and delay == pytest.approx(RETRY_DELAYS[-1], abs=1)


def test_when_storage_is_down_for_the_file_and_the_work_queue_alike_the_message_goes_back_to_the_host(monkeypatch):
    """Review: neither the file nor the work queue answering, the poison message failed 5 times in under a minute
    and went to webjobs-blobtrigger-poison-poison, which nothing read - the file lost. Now the failure goes back to
    the host (it retries, then poisons the message again) and every reconcile pass drains that second queue."""
    from tests.fakes.queues import FakeQueue

    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/outage.csv")
    storage_down(w, monkeypatch)

    def queue_down(body: dict[str, Any], delay_seconds: float = 0) -> None:
        raise FakeServiceError("the queue did not answer", transient=True)

    with monkeypatch.context() as m:
        m.setattr(w.queue, "send", queue_down)
        with pytest.raises(FakeServiceError):
            w.app.poisoned_blobs.handle(poison(ref))
    again = FakeQueue(name="webjobs-blobtrigger-poison-poison")
    w.app.poisoned_blobs.poisoned_again = again
    again.send(poison(ref))  # the host poisoned the poison message
    summary = w.app.reconciler.reconcile()  # storage still down for the file: it is scheduled for later
    assert summary["poisonTakenAgain"] == 1 and again.depth() == 0
    [(body, _)] = queued(w)
    assert body["kind"] == "poisoned-blob" and body["tries"] == 1
    monkeypatch.undo()  # storage is back
    again.send(poison(ref))
    assert w.app.reconciler.reconcile()["poisonTakenAgain"] == 1
    assert [r.status for r in runs_of(w, ref)] == ["Training"]


def test_a_drained_message_that_fails_again_stays_for_the_next_pass(monkeypatch):
    from tests.fakes.queues import FakeQueue

    w = world()
    ref = w.drop("acme/stays.csv")
    again = FakeQueue(name="webjobs-blobtrigger-poison-poison")
    w.app.poisoned_blobs.poisoned_again = again
    again.send(poison(ref))
    monkeypatch.setattr(w.app.poisoned_blobs, "handle", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    assert w.app.poisoned_blobs.drain() == 0
    assert again.depth() == 1  # hidden for DRAIN_HIDE_SECONDS, then taken again


def test_a_record_that_cannot_be_written_keeps_being_tried_and_past_its_tries_says_so_loudly(monkeypatch, caplog):
    """Never dropped (second review: a cap that raised sent the message to retrain-work-poison, which nothing
    reads): every RETRY_DELAYS[-1] it is tried again; past RECORD_TRIES each try is an error in the log."""
    import logging

    from shared.usecases.poisoned_blobs import RECORD_TRIES

    w = world()
    ref = w.drop("acme/never-recorded.csv")
    storage_down(w, monkeypatch, notes=True)
    with caplog.at_level(logging.WARNING):
        assert w.app.poisoned_blobs.handle(poison(ref), len(RETRY_DELAYS), RECORD_TRIES + 3) == "retrying"
    [(body, delay)] = queued(w)
    assert body["recordTries"] == RECORD_TRIES + 4 and delay == pytest.approx(RETRY_DELAYS[-1], abs=1)
    assert [r.levelname for r in caplog.records if "not even its record" in r.getMessage()] == ["ERROR"]
