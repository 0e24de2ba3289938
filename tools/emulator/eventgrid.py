"""Event Grid stand-ins: custom topics the app publishes to, and a storage-events source for blob triggers.

Topics accept a batch in the schema they were created with (CloudEvents 1.0 or EventGridEvent), authenticated by
`aeg-sas-key` - or, for a topic with local auth disabled (`auth: entra`), only by an Entra ID bearer token for
`https://eventgrid.azure.net` (a key is refused); the wrong schema gets a 400 as on the real service. What a topic
received is kept (newest 10,000) and readable at `GET /admin/eventgrid/topics/{topic}/events`.

The storage-events source polls the storage account (Azurite emits no events) and delivers
`Microsoft.Storage.BlobCreated` / `BlobDeleted` events in the Event Grid schema to webhook subscriptions: the
subscription validation handshake first, then each event POSTed with `aeg-event-type: Notification`, at least once,
retried with exponential back-off (400 and 413 are not retried, as on Event Grid) and dead-lettered after
`max_attempts`.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient
from pydantic import BaseModel, Field

from tools.emulator.context import EMULATOR, bearer_token
from tools.emulator.identity import IDENTITY
from tools.emulator.state import Store

log = logging.getLogger("emulator.eventgrid")
SCHEMAS = ("CloudEventSchemaV1_0", "EventGridSchema")
MAX_KEPT = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENTGRID_AUDIENCE = "https://eventgrid.azure.net"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ---- custom topics ------------------------------------------------------------------------------------------
class Topics:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.received: dict[str, collections.deque[dict[str, Any]]] = {}

    def ensure(self, name: str, schema: str = "CloudEventSchemaV1_0", auth: str | None = None) -> dict[str, str]:
        """The topic (created when missing); `auth` ("key" or "entra") sets how publishers authenticate."""
        topics = self.store.ws.topics
        if name not in topics:
            topics[name] = {"key": secrets.token_urlsafe(32), "schema": schema}
            self.store.mark_dirty()
        if auth is not None and topics[name].get("auth", "key") != auth:
            topics[name]["auth"] = auth
            self.store.mark_dirty()
        self.received.setdefault(name, collections.deque(maxlen=MAX_KEPT))
        return topics[name]


TOPICS: web.AppKey[Topics] = web.AppKey("topics", Topics)
routes = web.RouteTableDef()


def _eg_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _schema_problem(schema: str, events: list[Any]) -> str | None:
    if schema == "CloudEventSchemaV1_0":
        for ev in events:
            if not isinstance(ev, dict) or ev.get("specversion") != "1.0" or not all(
                    isinstance(ev.get(k), str) and ev.get(k) for k in ("id", "source", "type")):
                return ("This resource is configured to receive event in 'CloudEventV10' schema. The JSON received "
                        "does not conform to the expected schema: each event needs specversion '1.0', id, source "
                        "and type.")
        return None
    for ev in events:
        if not isinstance(ev, dict) or not all(isinstance(ev.get(k), str) and ev.get(k)
                                               for k in ("id", "subject", "eventType", "eventTime")) \
                or "data" not in ev or "dataVersion" not in ev:
            return ("This resource is configured to receive event in 'EventGridEvent' schema. The JSON received "
                    "does not conform to the expected schema: each event needs id, subject, eventType, eventTime, "
                    "data and dataVersion.")
    return None


@routes.post("/eventgrid/topics/{topic}/api/events", name="eventgrid.publish")
async def publish(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    name = request.match_info["topic"]
    topic = topics.store.ws.topics.get(name)
    if topic is None:
        return _eg_error(404, "NotFound", f"Topic '{name}' does not exist.")
    auth = _authenticate(request, topic)
    if isinstance(auth, web.Response):
        return auth
    raw = await request.read()
    if len(raw) > MAX_BATCH_BYTES:
        return _eg_error(413, "RequestEntityTooLarge", "The maximum size of a batch is 1048576 bytes.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _eg_error(400, "BadRequest", "The request body is not valid JSON.")
    events = body if isinstance(body, list) else [body]
    content_type = request.headers.get("Content-Type") or ""
    sent_cloud = "cloudevents" in content_type
    if (topic["schema"] == "CloudEventSchemaV1_0") != sent_cloud and content_type.startswith("application/"):
        # The wrong content type for the topic's schema is refused the way the real service refuses it.
        mismatch = _schema_problem(topic["schema"], events) or (
            f"This resource is configured to receive event in '{topic['schema']}' schema; the request's "
            f"Content-Type '{content_type.split(';')[0]}' is for the other schema.")
        return _eg_error(400, "BadRequest", mismatch)
    problem = _schema_problem(topic["schema"], events)
    if problem:
        return _eg_error(400, "BadRequest", problem)
    kept = topics.received.setdefault(name, collections.deque(maxlen=MAX_KEPT))
    for ev in events:
        kept.append({"receivedAt": _now(), "auth": auth, "event": ev})
    return web.Response(status=200)


def _authenticate(request: web.Request, topic: dict[str, str]) -> str | web.Response:
    """"key" or "bearer" when the publisher may publish, else the 401 the real service gives."""
    if topic.get("auth", "key") == "entra":
        if request.headers.get("aeg-sas-key") or request.headers.get("aeg-sas-token"):
            return _eg_error(401, "Unauthorized", "Local authentication (keys, SAS tokens) is disabled for this "
                                                  "topic; use an Entra ID token.")
        token = bearer_token(request)
        if token is None or request.app[IDENTITY].verify(token, EVENTGRID_AUDIENCE) is None:
            return _eg_error(401, "Unauthorized", "The bearer token is missing, expired, or not for "
                                                  f"{EVENTGRID_AUDIENCE}.")
        return "bearer"
    if not hmac.compare_digest(request.headers.get("aeg-sas-key", "").encode(), topic["key"].encode()):
        return _eg_error(401, "Unauthorized", "The request authorization key is not authorized for this topic.")
    return "key"


@routes.get("/admin/eventgrid/topics/{topic}/events", name="admin.eventgrid.events")
async def received(request: web.Request) -> web.Response:
    topics = request.app[TOPICS]
    name = request.match_info["topic"]
    if name not in topics.store.ws.topics:
        return _eg_error(404, "NotFound", f"Topic '{name}' does not exist.")
    return web.json_response(list(topics.received.get(name, [])))


@routes.delete("/admin/eventgrid/topics/{topic}/events", name="admin.eventgrid.clear")
async def clear_received(request: web.Request) -> web.Response:
    request.app[TOPICS].received.pop(request.match_info["topic"], None)
    return web.Response(status=204)


@routes.put("/admin/eventgrid/topics/{topic}", name="admin.eventgrid.create")
async def create_topic(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else {}
    schema = body.get("schema", "CloudEventSchemaV1_0")
    if schema not in SCHEMAS:
        return _eg_error(400, "BadRequest", f"schema must be one of {', '.join(SCHEMAS)}")
    topic = request.app[TOPICS].ensure(request.match_info["topic"], schema)
    base = request.app[EMULATOR].base_url
    return web.json_response({"topic_endpoint": f"{base}/eventgrid/topics/{request.match_info['topic']}/api/events",
                              "topic_key": topic["key"], "schema": topic["schema"]})


# ---- storage events ------------------------------------------------------------------------------------------
class Subscription(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    name: str = ""  # as in Event Grid: one subscription per name; adding a name again replaces it
    endpoint: str
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    event_types: list[str] = Field(default_factory=lambda: ["Microsoft.Storage.BlobCreated"])
    validate_endpoint: bool = True
    validated: bool = False
    max_attempts: int = 30
    delivered: int = 0
    dead_lettered: list[dict[str, Any]] = Field(default_factory=list)

    def wants(self, event: dict[str, Any]) -> bool:
        return (event["eventType"] in self.event_types and event["subject"].startswith(self.subject_begins_with)
                and event["subject"].endswith(self.subject_ends_with))


def subscription_from_flag(text: str) -> Subscription:
    """`URL` (every container) or `<container>=URL` (one container's blobs); named after the container (or `all`),
    so starting again with a new URL replaces the subscription instead of adding a second one."""
    container, sep, url = text.partition("=")
    if sep and not container.startswith(("http://", "https://")):
        return Subscription(name=container, endpoint=url,
                            subject_begins_with=f"/blobServices/default/containers/{container}/")
    return Subscription(name="all", endpoint=text)


class StorageEventSource:
    """Watches one storage account by polling and delivers blob events to webhook subscriptions."""

    def __init__(self, store: Store, connection_string: str, poll_seconds: float = 0.5,
                 retry_base: float = 1.0, retry_cap: float = 60.0, delivery_concurrency: int = 4) -> None:
        self.store = store
        self.connection_string = connection_string
        self.poll_seconds = poll_seconds
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.subscriptions: list[Subscription] = [Subscription.model_validate(s)
                                                  for s in store.ws.storage_watch.subscriptions]
        self._validated: dict[str, asyncio.Event] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._client: BlobServiceClient | None = None
        self._sequence = 0
        self._loop_task: asyncio.Task[None] | None = None
        self._scanned: set[str] = set()  # containers listed since the emulator started
        self._since: float | None = None  # when a subscription was last added (after the start)
        self.account_name = ""
        self.blob_endpoint = ""

    # -- lifecycle
    async def start(self) -> None:
        from tools.emulator.blobs import StorageAccount

        account = StorageAccount.parse(self.connection_string)
        self.account_name, self.blob_endpoint = account.account_name, account.blob_endpoint
        self._client = BlobServiceClient.from_connection_string(self.connection_string)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=35, connect=5))
        first_start = not self.store.ws.storage_watch.seen
        changes = await self._scan()
        if not first_start:  # blobs that changed while the emulator was down are delivered now
            self._dispatch(changes)
        for sub in self.subscriptions:
            self._activate(sub)
        self._loop_task = asyncio.get_running_loop().create_task(self._poll_loop())

    async def close(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session:
            await self._session.close()
        if self._client:
            await self._client.close()

    # -- subscriptions
    def add(self, sub: Subscription) -> Subscription:
        """Add a subscription, or replace the one with the same name (its URL or filters changed)."""
        self.subscriptions = [s for s in self.subscriptions if not (sub.name and s.name == sub.name)] + [sub]
        if self._session is not None:
            self._since = time.time()
        self._persist()
        if self._session is not None:
            self._activate(sub)
        return sub

    def remove(self, sub_id: str) -> bool:
        before = len(self.subscriptions)
        self.subscriptions = [s for s in self.subscriptions if s.id != sub_id]
        self._persist()
        return len(self.subscriptions) < before

    def _persist(self) -> None:
        self.store.ws.storage_watch.subscriptions = [
            s.model_dump(exclude={"dead_lettered", "delivered"}) for s in self.subscriptions]
        self.store.mark_dirty()

    def _activate(self, sub: Subscription) -> None:
        ready = self._validated.setdefault(sub.id, asyncio.Event())
        self._slots.setdefault(sub.id, asyncio.Semaphore(4))
        if sub.validated or not sub.validate_endpoint:
            ready.set()
        else:
            self._spawn(self._validate(sub, ready))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _validate(self, sub: Subscription, ready: asyncio.Event) -> None:
        """Event Grid's handshake: POST a SubscriptionValidationEvent, expect the code back."""
        code = str(uuid.uuid4())
        delay = self.retry_base
        while sub in self.subscriptions:
            event = {"id": str(uuid.uuid4()), "topic": self._topic(), "subject": "",
                     "data": {"validationCode": code, "validationUrl": ""},
                     "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "eventTime": _now(),
                     "metadataVersion": "1", "dataVersion": "2"}
            try:
                assert self._session is not None
                async with self._session.post(sub.endpoint, json=[event], headers={
                        "aeg-event-type": "SubscriptionValidation", "aeg-subscription-name": sub.id.upper()}) as resp:
                    body = await resp.json(content_type=None) if resp.status == 200 else None
                    if isinstance(body, dict) and body.get("validationResponse") == code:
                        sub.validated = True
                        self._persist()
                        ready.set()
                        log.info("subscription %s validated", sub.id)
                        return
                    log.info("subscription %s: validation answered HTTP %s", sub.id, resp.status)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                log.debug("subscription %s: validation not answered (%s)", sub.id, type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- scanning
    def _topic(self) -> str:
        return (f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator/providers/"
                f"Microsoft.Storage/storageAccounts/{self.account_name}")

    def _watched(self) -> set[str] | None:
        """The containers some subscription wants blob events of (None: every container). A subscription to other
        event types (the workspace's job events) needs no listing; with none, the account is not listed at all - a
        listing of every container every poll is what an idle emulator spent its time on, on a shared Azurite."""
        wanted: set[str] = set()
        for sub in self.subscriptions:
            if not any(t.startswith("Microsoft.Storage.") for t in sub.event_types):
                continue
            found = re.match(r"/blobServices/default/containers/([^/]+)/", sub.subject_begins_with)
            if found is None:
                return None
            wanted.add(found.group(1))
        return wanted

    async def _scan(self) -> list[dict[str, Any]]:
        """List the watched containers; return events for blobs created, changed or deleted since the last scan. A
        container watched for the first time since the emulator started takes as news only blobs written since the
        subscription that watches it was added (Event Grid delivers what happens after a subscription, not before)."""
        assert self._client is not None
        wanted = self._watched()
        if wanted is not None and not wanted:
            return []
        names = sorted(wanted) if wanted is not None else [c.name async for c in self._client.list_containers()]
        seen = self.store.ws.storage_watch.seen
        current: dict[str, tuple[str, Any]] = {}
        for name in names:
            try:
                async for blob in self._client.get_container_client(name).list_blobs():
                    current[f"{name}/{blob.name}"] = (blob.etag, blob)
            except ResourceNotFoundError:
                pass  # not created yet
        events = []
        for key, (etag, blob) in current.items():
            if seen.get(key) != etag:
                seen[key] = etag
                since = self._since if key.partition("/")[0] not in self._scanned else None
                if since is not None and blob.last_modified is not None and \
                        blob.last_modified.timestamp() < since - 1:
                    continue  # there before the subscription
                events.append(self._event("Microsoft.Storage.BlobCreated", key, etag, blob))
        scanned = set(names)
        for key in [k for k in seen if k not in current and k.partition("/")[0] in scanned]:
            events.append(self._event("Microsoft.Storage.BlobDeleted", key, seen.pop(key), None))
        self._scanned |= scanned
        if events:
            self.store.mark_dirty()
        return events

    def _event(self, event_type: str, key: str, etag: str, blob: Any) -> dict[str, Any]:
        container, _, name = key.partition("/")
        self._sequence += 1
        data: dict[str, Any] = {
            "api": "PutBlob" if event_type.endswith("Created") else "DeleteBlob",
            "clientRequestId": str(uuid.uuid4()), "requestId": str(uuid.uuid4()), "eTag": etag,
            "contentType": (blob.content_settings.content_type if blob is not None else None)
            or "application/octet-stream",
            "contentLength": blob.size if blob is not None else 0, "blobType": "BlockBlob",
            "url": f"{self.blob_endpoint}/{container}/{quote(name)}",
            "sequencer": f"{self._sequence:032x}", "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        }
        if event_type.endswith("Deleted"):
            data.pop("contentLength")
        return {"topic": self._topic(), "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
                "eventType": event_type, "id": str(uuid.uuid4()), "data": data, "dataVersion": "",
                "metadataVersion": "1", "eventTime": _now()}

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                self._dispatch(await self._scan())
            except (AzureError, aiohttp.ClientError, OSError) as exc:
                log.warning("storage events: scan failed (%s); retrying", type(exc).__name__)

    # -- delivery
    def deliver(self, events: list[dict[str, Any]]) -> None:
        """Deliver events from another source (the Azure ML stand-in's workspace events) to the subscriptions
        whose event types and subject filters want them."""
        self._dispatch(events)

    def _dispatch(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            for sub in self.subscriptions:
                if sub.wants(event):
                    self._spawn(self._deliver(sub, event))

    async def _deliver(self, sub: Subscription, event: dict[str, Any]) -> None:
        await self._validated[sub.id].wait()
        delay = self.retry_base
        for attempt in range(1, sub.max_attempts + 1):
            status: int | str
            try:
                assert self._session is not None
                async with self._slots[sub.id], self._session.post(sub.endpoint, json=[event], headers={
                        "aeg-event-type": "Notification", "aeg-subscription-name": sub.id.upper(),
                        "aeg-delivery-count": str(attempt - 1), "aeg-data-version": "",
                        "aeg-metadata-version": "1"}) as resp:
                    status = resp.status
                    await resp.read()
                if 200 <= status < 300:
                    sub.delivered += 1
                    return
                if status in (400, 413):
                    break  # Event Grid does not retry these
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = type(exc).__name__
            log.info("delivery of %s to subscription %s failed (attempt %d: %s)", event["subject"], sub.id,
                     attempt, status)
            await asyncio.sleep(delay * (0.8 + 0.4 * secrets.randbelow(1000) / 1000))
            delay = min(delay * 2, self.retry_cap)
        sub.dead_lettered.append({"event": event, "deadLetteredAt": _now(), "lastResult": str(status)})


SOURCE: web.AppKey[StorageEventSource] = web.AppKey("storage_events", StorageEventSource)


@routes.get("/admin/storage-events/subscriptions", name="admin.storage.list")
async def list_subscriptions(request: web.Request) -> web.Response:
    return web.json_response([s.model_dump() for s in request.app[SOURCE].subscriptions])


@routes.post("/admin/storage-events/subscriptions", name="admin.storage.add")
async def add_subscription(request: web.Request) -> web.Response:
    try:
        sub = Subscription.model_validate(await request.json())
    except ValueError as exc:
        return _eg_error(400, "BadRequest", str(exc))
    if not sub.endpoint.startswith(("http://", "https://")):
        return _eg_error(400, "BadRequest", "endpoint must be an http(s) URL")
    request.app[SOURCE].add(sub)
    return web.json_response(sub.model_dump(), status=201)


@routes.delete("/admin/storage-events/subscriptions/{id}", name="admin.storage.delete")
async def delete_subscription(request: web.Request) -> web.Response:
    return web.Response(status=204 if request.app[SOURCE].remove(request.match_info["id"]) else 404)
