"""Event publishing: CloudEvents 1.0 to an Event Grid topic through azure-eventgrid, type prefix `Retrain.`.

Every event goes to the outbox first, then to the topic; the reconcile timer sends what the topic did not take
(`flush`). Delivery is at least once, with a stable id per event (derived from its content) for consumers to
deduplicate by. Publishing never fails or slows the operation it reports: after a failed send the topic is left
alone for CIRCUIT_SECONDS and events wait in the outbox. Event data carries ids, locations and metrics, never
secrets (and is scrubbed once more before it is stored or sent). With no topic configured, events are logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient

from shared.adapters.outbox import Outbox, StoredEvent, group_rows
from shared.adapters.transport import pooled_transport
from shared.decisions import FUNCTION_TIMEOUT_SECONDS
from shared.events import PREFIX, Event
from shared.logs import scrub
from shared.ports import events as port
from shared.records import now_iso
from shared.settings import Settings

log = logging.getLogger("shared.events")
# The SDK's serializer reads a send's keyword arguments as event attributes and warns of read_timeout, per send.
logging.getLogger("azure.eventgrid._legacy._generated._serialization").setLevel(logging.ERROR)

CIRCUIT_SECONDS = 30.0
CONNECT_SECONDS, READ_SECONDS = 3.0, 5.0  # a send's bound: 2 tries of these, well inside an endpoint lease
SEND_BATCH = 100  # events per request (Event Grid takes up to 1 MB per request)
# A batch's rows are held from `flush` while their writer records what they announce, then sent or withdrawn by it:
# for host.json's functionTimeout, past which the writer's invocation is over (a crash: a flush sends them then).
HOLD_SECONDS = float(FUNCTION_TIMEOUT_SECONDS)


def _iso(event: CloudEvent[Any]) -> str:
    return (event.time.isoformat(timespec="milliseconds").replace("+00:00", "Z") if event.time is not None
            else now_iso())


def _stored_event(event: CloudEvent[Any]) -> StoredEvent:
    """An event as the outbox keeps it: id, type without the prefix, subject, data, time."""
    return event.id, event.type.removeprefix(PREFIX), event.subject or "", event.data, _iso(event)


class EventBatch(port.EventBatch):
    """Events gathered from a fan-out's threads (`gathering`). The fan-out stores them before it records the
    outcomes they announce (`store`), and sends them after (`send`): an event is in the outbox before its outcome
    is in the ledger, as with `publish`."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self._events: list[CloudEvent[Any]] = []
        self._lock = threading.Lock()

    def add(self, event: CloudEvent[Any]) -> None:
        with self._lock:
            self._events.append(event)

    def gathering(self) -> contextlib.AbstractContextManager[None]:
        return self.publisher.gathering(self)

    def store(self, subjects: Collection[str] | None = None) -> list[Stored]:
        with self._lock:
            if subjects is None:
                events, self._events = self._events, []
            else:
                events = [e for e in self._events if e.subject in subjects]
                self._events = [e for e in self._events if e.subject not in subjects]
        return self.publisher.store(events) if events else []

    def send(self, stored: Any) -> None:
        if stored:
            self.publisher.send_stored(stored)

    def withdraw(self, stored: Any, refused: Callable[[str, str, dict[str, Any]], bool]) -> list[Stored]:
        return self.publisher.withdraw(stored, refused)


@dataclass
class Stored:
    """Events stored in one outbox row, to send together and then forget."""

    row: str
    events: list[CloudEvent[Any]]
    # the row still holds an announcement that was taken back (the outbox write failed): never released early -
    # after its hold a flush sends only what the ledger confirms
    dirty: bool = False


def event_id(event_type: str, subject: str, data: dict[str, Any]) -> str:
    return hashlib.sha256(f"{event_type}\n{subject}\n{json.dumps(data, sort_keys=True)}".encode()).hexdigest()[:32]


class EventPublisher(port.EventSink):
    """Publishes `Retrain.*` CloudEvents through the outbox to the configured topic (or logs them)."""

    def __init__(self, settings: Settings, outbox: Outbox, identity: Any = None,
                 confirm: Callable[[str, str, Any], bool] | None = None) -> None:
        """Publishes with the topic's key when one is set, else with `identity` (an Entra ID token credential:
        the app's managed identity, for a topic with local auth disabled). `confirm(type, subject, data)`: whether
        an event a writer stored and never finished with (its hold ended) may be sent - the ledger's word on what it
        announces (`usecases.outcomes.announcement_recorded`); without it, such events are sent as they are."""
        self.source = settings.event_source
        self.outbox = outbox
        self._client: EventGridPublisherClient | None = None
        self._lock = threading.Lock()
        self._skip_until = 0.0
        self.confirm = confirm
        self._local = threading.local()  # the EventBatch this thread gathers into, if any
        credential = AzureKeyCredential(settings.eventgrid_key.get_secret_value()) if settings.eventgrid_key \
            else identity
        if settings.eventgrid_endpoint and credential is not None:
            self._client = EventGridPublisherClient(
                settings.eventgrid_endpoint, credential, transport=pooled_transport(16), retry_total=1,
                retry_backoff_factor=0.2, retry_backoff_max=1, connection_timeout=3, read_timeout=5)
        else:
            log.info("no Event Grid topic configured (RETRAIN_EVENTGRID_ENDPOINT): events are only logged")

    def batch(self) -> EventBatch:
        return EventBatch(self)

    def publish(self, event: Event) -> None:
        event_type, subject = event.type_name(), event.subject
        try:
            clean = json.loads(scrub(json.dumps(event.data(), default=str)))
        except (TypeError, ValueError) as exc:  # never let an event fail the operation it reports
            log.warning("could not serialise Retrain.%s for %s (%s)", event_type, subject, exc)
            return
        # Also a custom event in Application Insights when telemetry is on (the distro reads this attribute).
        if log.isEnabledFor(logging.INFO):
            log.info("event Retrain.%s %s %s", event_type, subject, json.dumps(clean, sort_keys=True),
                     extra={"microsoft.custom_event.name": f"Retrain.{event_type}", "retrain.subject": subject})
        if self._client is None:
            return
        ident, when = event_id(event_type, subject, clean), now_iso()
        batch = getattr(self._local, "batch", None)
        if batch is not None:
            batch.add(self._event(ident, event_type, subject, clean, when))
            return
        try:
            if not self.outbox.add(ident, event_type, subject, clean, when):
                return  # announced before: it is sent, or waits in the outbox
        except AzureError as exc:  # no outbox now: send it directly rather than not at all
            log.warning("could not store Retrain.%s in the outbox (%s); sending it directly", event_type,
                        type(exc).__name__)
        if time.monotonic() < self._skip_until:
            return  # the topic failed a moment ago: the outbox keeps it for the next reconcile
        if self._send([self._event(ident, event_type, subject, clean, when)]):
            self._forget([ident])

    @contextlib.contextmanager
    def gathering(self, batch: EventBatch) -> Iterator[None]:
        """Events this thread publishes inside the block go to `batch` (a fan-out's): stored and sent with the
        batch's outcomes, not one round trip each."""
        previous = getattr(self._local, "batch", None)
        self._local.batch = batch
        try:
            yield
        finally:
            self._local.batch = previous

    def flush(self, limit: int = 1000) -> int:
        """Send what waits in the outbox, oldest first, 100 per request; the number sent. A row is forgotten once
        all its events were sent."""
        if self._client is None:
            return 0
        sent = 0
        rows = self.outbox.pending(limit)
        dropped, unsure = [], set()
        for r in rows:
            if not r.get("orphaned") or self.confirm is None:
                continue
            try:
                if not self.confirm(r["type"], r["subject"], r["data"]):
                    dropped.append(r)
            except Exception:  # noqa: BLE001 - the ledger did not answer: this row waits for the next flush, whole
                unsure.add(r["row"])
        if dropped:  # announcements of changes the ledger never took (their writer died, or could not withdraw)
            log.warning("%d event(s) left by a writer that never finished announce what the ledger does not "
                        "record; not sent", len(dropped))
        gone = {id(r) for r in dropped}
        rows = [r for r in rows if id(r) not in gone and r["row"] not in unsure]
        self._forget(sorted({r["row"] for r in dropped} - {r["row"] for r in rows} - unsure))
        unsent: dict[str, int] = {}
        for r in rows:
            unsent[r["row"]] = unsent.get(r["row"], 0) + 1
        for i in range(0, len(rows), SEND_BATCH):
            chunk = rows[i:i + SEND_BATCH]
            events = [self._event(r["RowKey"], r["type"], r["subject"], r["data"], r["time"]) for r in chunk]
            if not self._send(events, from_outbox=True):
                break
            done = []
            for r in chunk:
                unsent[r["row"]] -= 1
                if unsent[r["row"]] == 0:
                    done.append(r["row"])
            self._forget(done)
            sent += len(chunk)
        return sent

    def _event(self, ident: str, event_type: str, subject: str, data: Any, when: str) -> CloudEvent[Any]:
        from datetime import datetime

        return CloudEvent(source=self.source, type=f"{PREFIX}{event_type}", subject=subject, data=data, id=ident,
                          time=datetime.fromisoformat(when.replace("Z", "+00:00")))

    def _send(self, events: list[CloudEvent[Any]], from_outbox: bool = False) -> bool:
        assert self._client is not None
        try:
            # Per call: the client ignores the timeouts given to it (and its transport's), so a topic that accepts
            # connections but does not answer would hold the caller for 300 s.
            self._client.send(events, connection_timeout=CONNECT_SECONDS, read_timeout=READ_SECONDS)
            with self._lock:
                self._skip_until = 0.0
            return True
        except (AzureError, OSError) as exc:
            with self._lock:
                self._skip_until = time.monotonic() + CIRCUIT_SECONDS
            log.warning("could not publish %d event(s) (%s); they wait in the outbox%s", len(events),
                        type(exc).__name__, "" if from_outbox else " and the operation goes on")
            return False

    def store(self, events: list[CloudEvent[Any]]) -> list[Stored]:
        """Store `events` in the outbox (grouped rows, 100 to a transaction), held from `flush` for HOLD_SECONDS;
        returns them by row, for `send_stored` (or `withdraw`) once the outcomes they announce are recorded."""
        by_id = {e.id: e for e in events}
        rows = [_stored_event(e) for e in events]
        try:
            groups = self.outbox.add_many(rows, held_until=time.time() + HOLD_SECONDS)
        except AzureError as exc:  # no outbox now: send them directly rather than not at all
            log.warning("could not store %d event(s) in the outbox (%s); sending them directly", len(rows),
                        type(exc).__name__)
            groups = [group for group, _ in group_rows(rows)]
        return [Stored(g.row, [by_id[e[0]] for e in g.events]) for g in groups]

    def send_stored(self, stored: list[Stored]) -> None:
        """Send stored events, a row's to a request, and forget the rows the topic took."""
        if self._client is None:
            return
        for i, one in enumerate(stored):
            if time.monotonic() < self._skip_until or not self._send(one.events, from_outbox=True):
                self._release([s.row for s in stored[i:] if not s.dirty])  # the outbox keeps them for a flush
                return
            self._forget([one.row])

    def withdraw(self, stored: list[Stored], refused: Callable[[str, str, dict[str, Any]], bool]) -> list[Stored]:
        """Take back stored events not sent yet: a row holding one is rewritten in place with the rest (still held),
        or removed when nothing is left - one write, so what else it held is never lost. When that write fails the
        row keeps the refused event, held: a flush after the hold sends only what the ledger confirms (`confirm`)."""
        kept: list[Stored] = []
        for one in stored:
            left = [e for e in one.events if not refused(e.type.removeprefix(PREFIX), e.subject or "",
                                                         e.data if isinstance(e.data, dict) else {})]
            if len(left) == len(one.events):
                kept.append(one)
                continue
            dirty = False
            try:
                if left:
                    self.outbox.rewrite(one.row, [_stored_event(e) for e in left], time.time() + HOLD_SECONDS)
                else:
                    self.outbox.remove([one.row])
            except AzureError as exc:
                dirty = True
                log.warning("could not take back %d event(s) from the outbox (%s); the row stays held, and a flush "
                            "sends only what the ledger confirms", len(one.events) - len(left), type(exc).__name__)
            if left:
                kept.append(Stored(one.row, left, dirty))
        return kept

    def _release(self, rows: list[str]) -> None:
        try:
            self.outbox.release(rows)
        except AzureError as exc:  # sent by a flush once their hold ends
            log.warning("could not release %d held outbox row(s) (%s)", len(rows), type(exc).__name__)

    def _forget(self, rows: list[str]) -> None:
        try:
            self.outbox.remove(rows)
        except AzureError as exc:  # sent but not forgotten: sent again later (at least once)
            log.warning("could not clear %d sent outbox row(s) (%s)", len(rows), type(exc).__name__)
