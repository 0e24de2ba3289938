"""Event publishing: CloudEvents 1.0 to an Event Grid topic through azure-eventgrid, type prefix `Retrain.`.

When no topic is configured the app says so once and carries on. Publishing never fails a deployment: errors are
retried within a small budget (the SDK's pipeline) and then logged. Event data carries ids, locations and
metrics, never secrets (and is scrubbed once more before it leaves).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient

from shared.logs import scrub
from shared.settings import Settings

log = logging.getLogger("shared.events")

EVENT_TYPES = ("TrainingDataAccepted", "TrainingDataRejected", "JobSubmitted", "JobFinished", "JobFailed",
               "ModelRejected", "EndpointUpdated", "EndpointUpdateFailed", "EndpointRolledBack")


class EventPublisher:
    """Publishes `Retrain.*` CloudEvents to the configured topic (or logs them when there is none)."""

    def __init__(self, settings: Settings) -> None:
        self.source = settings.event_source
        self._client: EventGridPublisherClient | None = None
        self._warned = False
        self._lock = threading.Lock()
        if settings.eventgrid_endpoint and settings.eventgrid_key:
            self._client = EventGridPublisherClient(
                settings.eventgrid_endpoint, AzureKeyCredential(settings.eventgrid_key.get_secret_value()),
                retry_total=3, retry_backoff_factor=0.3, retry_backoff_max=5, connection_timeout=5, read_timeout=10)

    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type}")
        try:
            clean = json.loads(scrub(json.dumps(data, default=str)))
        except (TypeError, ValueError) as exc:  # never let an event fail the operation it reports
            log.warning("could not serialise Retrain.%s for %s (%s)", event_type, subject, exc)
            return
        if self._client is None:
            with self._lock:
                if not self._warned:
                    self._warned = True
                    log.info("no Event Grid topic configured (RETRAIN_EVENTGRID_ENDPOINT): events are only logged")
            log.info("event Retrain.%s %s %s", event_type, subject, json.dumps(clean, sort_keys=True))
            return
        event = CloudEvent(source=self.source, type=f"Retrain.{event_type}", subject=subject, data=clean)
        try:
            self._client.send([event])
        except (AzureError, OSError) as exc:
            log.warning("could not publish Retrain.%s for %s (%s); the operation goes on", event_type, subject,
                        type(exc).__name__)
