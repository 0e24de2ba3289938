"""Blobs the Functions host gave up on. After `poisonBlobThreshold` (host.json) failed tries of a blob trigger the
host puts a message naming the blob on `webjobs-blobtrigger-poison` and never triggers for that version again: a
name the SDK cannot read, or a file whose every try met an outage, would be lost without a word. Here such a file
is taken again by the use case its landing calls (runs are keyed by the file's version, so a file taken after
all is not taken twice); when it still cannot be taken, it is tried again later from the work queue with a
growing delay, and at last recorded as not taken - a Rejected run, a note in rejected/ and an event - never
dropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from shared.errors import ServiceError, describe
from shared.ports.queues import WorkQueue
from shared.records import BlobRef
from shared.settings import Settings
from shared.usecases.intake import TrainingIntake
from shared.usecases.model_landing import ModelLanding

log = logging.getLogger("shared.usecases.poisoned_blobs")
POISON_QUEUE = "webjobs-blobtrigger-poison"  # the host's, for every blob trigger of the app
RETRY_DELAYS = (60, 300, 900, 3600, 3600, 4 * 3600)  # seconds before each further try (~6.4 h in all)
RECORD_TRIES = 6  # tries of a record that cannot be written before each further one is logged as an error
DRAIN_HIDE_SECONDS = 300.0


@dataclass
class PoisonedBlobs:
    settings: Settings
    intake: TrainingIntake
    model_landing: ModelLanding
    queue: WorkQueue | None
    # `webjobs-blobtrigger-poison-poison`: where the host puts a poison message that blob_poisoned itself failed on
    # maxDequeueCount times (storage down: neither the file nor the work queue answered); reconcile drains it
    poisoned_again: WorkQueue | None = None

    def drain(self, limit: int = 32) -> int:
        """Take again the poison messages blob_poisoned failed on (a reconcile pass's step); the number handled. One
        that fails again stays, and comes back after DRAIN_HIDE_SECONDS."""
        if self.poisoned_again is None:
            return 0
        handled = 0
        for message in self.poisoned_again.receive(limit, DRAIN_HIDE_SECONDS):
            try:
                self.handle(message.body)
            except Exception:
                log.exception("a poison message failed again; the next reconcile pass tries it again")
                continue
            self.poisoned_again.delete(message)
            handled += 1
        return handled

    def handle(self, message: dict[str, Any], tries: int = 0, record_tries: int = 0) -> str:
        """One poison message (the host's shape: ContainerName, BlobName, FunctionId, ETag); what was done:
        taken / retrying / recorded / ignored."""
        container, name = message.get("ContainerName"), message.get("BlobName")
        if not isinstance(container, str) or not isinstance(name, str) or not container or not name:
            log.error("a poison message that names no blob was dropped (keys: %s)", sorted(message)[:10])
            return "ignored"
        ref = BlobRef(container, name)
        if container not in (self.settings.data_container, self.settings.models_container):
            log.warning("%s was poisoned, but the app takes no file from %s; left as it is", ref.path, container)
            return "ignored"
        data = container == self.settings.data_container  # else the models container
        try:
            if data:
                self.intake.accept(ref, trigger="poison")
            else:
                self.model_landing.landed(ref, trigger="poison")
        except Exception as exc:
            problem = describe(exc) if isinstance(exc, ServiceError) else \
                f"an unexpected {type(exc).__name__} (the function's log has it)"
            if not isinstance(exc, ServiceError):
                log.exception("taking %s again failed", ref.path)
            if tries < len(RETRY_DELAYS) and self.queue is not None:
                delay = RETRY_DELAYS[tries]
                log.warning("%s could not be taken after the host gave up on it (%s); trying again in %d s "
                            "(%d of %d)", ref.path, problem, delay, tries + 1, len(RETRY_DELAYS))
                self._later(container, name, tries + 1, delay)
                return "retrying"
            message_text = (f"the app could not take this file after {tries + 1} tries beside the host's: "
                            f"{problem}; it stays where it is (upload it again, or call POST /api/retrain on it)")
            log.error("%s: %s", ref.path, message_text)
            try:
                (self.intake if data else self.model_landing).left_in_place(ref, "NotTaken", message_text, "poison")
            except ServiceError as again:
                if self.queue is None:
                    raise
                # never dropped: past RECORD_TRIES it keeps trying every RETRY_DELAYS[-1], loudly
                log.log(logging.ERROR if record_tries >= RECORD_TRIES else logging.WARNING,
                        "%s: not even its record could be written (%s, %d tries); trying again in %d s", ref.path,
                        describe(again), record_tries + 1, RETRY_DELAYS[-1])
                self._later(container, name, tries, RETRY_DELAYS[-1], record_tries + 1)
                return "retrying"
            return "recorded"
        log.info("%s was taken again after the host gave up on it", ref.path)
        return "taken"

    def _later(self, container: str, name: str, tries: int, delay: float, record_tries: int = 0) -> None:
        """The next try, from the work queue (a failure to send it raises: the host retries this message)."""
        assert self.queue is not None
        body: dict[str, Any] = {"kind": "poisoned-blob", "blob": {"ContainerName": container, "BlobName": name},
                                "tries": tries}
        if record_tries:
            body["recordTries"] = record_tries
        self.queue.send(body, delay)
