"""The local stand-in for the Functions host (aiohttp): HTTP routes under the route prefix, Event Grid-based blob
trigger deliveries at `/runtime/webhooks/blobs?functionName=Host.Functions.<fn>`, timers on their NCRONTAB
schedule, and the admin routes Core Tools has (`GET /admin/host/status`, `POST /admin/functions/<fn>`).

Blob deliveries behave like the storage extension's: the webhook answers 202 at once and the work goes to an
internal queue; a blob is processed once per function and ETag (a receipt in `azure-webjobs-hosts`; a delivery of
a version being processed now is dropped, a new version of the same name is processed beside it), failures are
retried up to `poisonBlobThreshold` tries and then reported to the `webjobs-blobtrigger-poison` queue.
Every invocation is logged with its id and duration, as the host does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from tools.devhost.indexing import FunctionSpec, blob_pattern_regex
from tools.devhost.invoke import DevContext, blob_argument, call
from tools.devhost.timers import parse_schedule

log = logging.getLogger("devhost")
BODY_LIMIT = 100 * 1024 * 1024  # the Functions front end's request limit
POISON_QUEUE = "webjobs-blobtrigger-poison"
RECEIPTS_CONTAINER = "azure-webjobs-hosts"
_SUBJECT = re.compile(r"^/blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<name>.+)$")


def grid_event(event: dict[str, Any]) -> func.EventGridEvent:
    """An Event Grid schema event (or a CloudEvent) as the worker hands it to a function."""
    when = event.get("eventTime") or event.get("time")
    return func.EventGridEvent(id=str(event.get("id")), data=event.get("data") or {}, topic=str(event.get("topic") or
                               event.get("source") or ""), subject=str(event.get("subject") or ""),
                               event_type=str(event.get("eventType") or event.get("type") or ""),
                               event_time=datetime.fromisoformat(str(when).replace("Z", "+00:00")) if when else None,
                               data_version=str(event.get("dataVersion") or ""))


@dataclass
class HostOptions:
    script_root: Path
    host_json: dict[str, Any]
    environ: dict[str, str]
    bind: str = "127.0.0.1"
    port: int = 7071

    @property
    def route_prefix(self) -> str:
        return str(self.host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")

    @property
    def blob_parallelism(self) -> int:
        return int(self.host_json.get("extensions", {}).get("blobs", {}).get("maxDegreeOfParallelism",
                                                                               8 * (os.cpu_count() or 1)))

    @property
    def poison_threshold(self) -> int:
        return int(self.host_json.get("extensions", {}).get("blobs", {}).get("poisonBlobThreshold", 5))

    @property
    def retry_delay(self) -> float:
        """Seconds before a failed blob is tried again: the queues' visibilityTimeout, as in the extension."""
        text = str(self.host_json.get("extensions", {}).get("queues", {}).get("visibilityTimeout", "00:00:00"))
        h, m, s = (float(p) for p in text.split(":"))
        return h * 3600 + m * 60 + s

    @property
    def host_id(self) -> str:
        return self.environ.get("AzureFunctionsWebHost__hostid") or \
            "devhost-" + hashlib.sha256(str(self.script_root.resolve()).encode()).hexdigest()[:16]


class FunctionFailed(Exception):
    """The user function raised (already logged with its traceback by `_invoke`)."""


@dataclass
class BlobWork:
    spec: FunctionSpec
    container: str
    name: str
    etag: str | None
    url: str
    attempt: int = 0


class _Route:
    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        pattern = ""
        for part in (spec.route or "").split("/"):
            m = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]+)?(\?)?\}", part)
            if m is None:
                pattern += "/" + re.escape(part)
            elif m.group(1):
                pattern += f"(?:/(?P<{m.group(2)}>.*))?"
            elif m.group(3):
                pattern += f"(?:/(?P<{m.group(2)}>[^/]+))?"
            else:
                pattern += f"/(?P<{m.group(2)}>[^/]+)"
        self.regex = re.compile("^" + pattern + "/?$", re.IGNORECASE)


class DevHost:
    def __init__(self, specs: list[FunctionSpec], options: HostOptions) -> None:
        self.specs = {s.name: s for s in specs}
        self.opts = options
        self.routes = [_Route(s) for s in specs if s.trigger_type == "httpTrigger"]
        self.pool = ThreadPoolExecutor(max_workers=int(options.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "16")),
                                       thread_name_prefix="invoke")
        self.blob_pool = ThreadPoolExecutor(max_workers=max(1, options.blob_parallelism), thread_name_prefix="blob")
        self.queue: asyncio.Queue[BlobWork] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.runner: web.AppRunner | None = None
        self.invocations = {"succeeded": 0, "failed": 0}
        self.started = datetime.now(UTC)
        self._storage: BlobServiceClient | None = None
        self._in_progress: set[tuple[str, str, str, str]] = set()  # (function, container, name, ETag)
        self._in_progress_lock = threading.Lock()
        self.listeners: list[Any] = []  # queue triggers' listeners

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=BODY_LIMIT)
        app.router.add_get("/admin/host/status", self.status)
        app.router.add_post("/admin/functions/{name}", self.admin_invoke)
        app.router.add_post("/runtime/webhooks/blobs", self.blob_webhook)
        app.router.add_post("/runtime/webhooks/eventgrid", self.eventgrid_webhook)
        prefix = f"/{self.opts.route_prefix}" if self.opts.route_prefix else ""
        app.router.add_route("*", prefix + "/{tail:.*}", self.http)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.web_app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.opts.bind, self.opts.port)
        await site.start()
        loop = asyncio.get_running_loop()
        for _ in range(max(1, self.opts.blob_parallelism)):
            self.tasks.append(loop.create_task(self._blob_worker()))
        for spec in self.specs.values():
            if spec.trigger_type == "timerTrigger":
                self.tasks.append(loop.create_task(self._timer(spec)))
        self.start_queues()

    def start_queues(self) -> None:
        """A listener per queue-triggered function (tools/devhost/queues.py)."""
        from tools.devhost.queues import QueueListener, QueueOptions

        loop = asyncio.get_running_loop()
        for spec in self.specs.values():
            if spec.trigger_type == "queueTrigger":
                listener = QueueListener(spec, self.opts.environ, QueueOptions(self.opts.host_json), self._invoke)
                self.listeners.append(listener)
                self.tasks.append(loop.create_task(listener.run()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.blob_pool.shutdown(wait=True, cancel_futures=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.opts.bind}:{self.opts.port}"

    # ---- invocation -----------------------------------------------------------------------------------------
    def _invoke(self, spec: FunctionSpec, reason: str, make_argument: Any, retry: tuple[int, int] = (0, 0)) -> Any:
        """Run in a worker thread: build the argument, call the function, log like the host."""
        context = DevContext(spec.name, str(self.opts.script_root), *retry)
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, context.invocation_id)
        started = time.monotonic()
        try:
            result = call(spec, make_argument(), context)
        except BaseException:
            ms = int((time.monotonic() - started) * 1000)
            self.invocations["failed"] += 1
            log.exception("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", spec.name,
                          context.invocation_id, ms)
            raise
        ms = int((time.monotonic() - started) * 1000)
        self.invocations["succeeded"] += 1
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", spec.name, context.invocation_id, ms)
        return result

    # ---- HTTP -----------------------------------------------------------------------------------------------
    async def http(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        allowed: list[str] = []
        for route in self.routes:
            match = route.regex.match(path)
            if match is None:
                continue
            if request.method not in route.spec.methods:
                allowed += route.spec.methods
                continue
            return await self._http_call(route.spec, request, {k: v for k, v in match.groupdict().items()
                                                               if v is not None})
        if allowed:
            return web.json_response({"error": {"code": "MethodNotAllowed", "message": f"use {', '.join(allowed)}"}},
                                     status=405, headers={"Allow": ", ".join(sorted(set(allowed)))})
        return web.json_response({"error": {"code": "NotFound", "message": f"no function serves {path}"}},
                                 status=404)

    async def _http_call(self, spec: FunctionSpec, request: web.Request,
                         route_params: dict[str, str]) -> web.StreamResponse:
        body = await request.read()
        req = func.HttpRequest(request.method, str(request.url), headers=dict(request.headers),
                               params=dict(request.query), route_params=route_params, body=body)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.pool, self._invoke, spec, "This function was programmatically "
                                                "called via the host APIs.", lambda: req)
        except Exception:
            log.debug("HTTP function %s raised", spec.name, exc_info=True)
            return web.Response(status=500)
        if isinstance(result, func.HttpResponse):
            headers = dict(result.headers)
            if result.mimetype and not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = result.mimetype + (f"; charset={result.charset}" if result.charset else "")
            return web.Response(body=result.get_body(), status=result.status_code, headers=headers)
        if result is None:
            return web.Response(status=204)
        return web.Response(text=str(result))

    # ---- Event Grid triggers ----------------------------------------------------------------------------------
    async def eventgrid_webhook(self, request: web.Request) -> web.Response:
        """An Event Grid delivery to an Event Grid-triggered function, as the host takes it: the subscription's
        validation handshake, then each event invoked in turn; a failure answers 500 (Event Grid retries)."""
        fn = request.query.get("functionName", "")
        spec = self.specs.get(fn.removeprefix("Host.Functions."))
        if spec is None or spec.trigger_type != "eventGridTrigger":
            return web.json_response({"error": {"code": "NotFound", "message": f"no Event Grid trigger {fn!r}"}},
                                     status=404)
        try:
            events = await request.json()
        except ValueError:
            return web.json_response({"error": {"code": "BadRequest", "message": "the body is not JSON"}}, status=400)
        events = [e for e in (events if isinstance(events, list) else [events]) if isinstance(e, dict)]
        if request.headers.get("aeg-event-type", "") == "SubscriptionValidation":
            code = next(((e.get("data") or {}).get("validationCode") for e in events), None)
            if code:
                log.info("Event Grid subscription validated for %s", spec.name)
                return web.json_response({"validationResponse": code})
            return web.json_response({"error": {"code": "BadRequest", "message": "no validationCode"}}, status=400)
        loop = asyncio.get_running_loop()
        for event in events:
            try:
                await loop.run_in_executor(self.pool, self._invoke, spec, "EventGrid trigger fired",
                                           lambda e=event: grid_event(e))
            except Exception:  # noqa: BLE001 - logged by _invoke; Event Grid retries the delivery
                return web.json_response({"error": {"code": "FunctionFailed", "message": f"{spec.name} failed"}},
                                         status=500)
        return web.Response(status=200)

    # ---- blobs (Event Grid source) --------------------------------------------------------------------------
    async def blob_webhook(self, request: web.Request) -> web.Response:
        fn = request.query.get("functionName", "")
        spec = self.specs.get(fn.removeprefix("Host.Functions."))
        if spec is None or spec.trigger_type != "blobTrigger" or spec.blob_source != "EventGrid":
            return web.json_response({"error": {"code": "NotFound", "message": f"no Event Grid blob trigger {fn!r}"}},
                                     status=404)
        try:
            events = await request.json()
        except ValueError:
            return web.json_response({"error": {"code": "BadRequest", "message": "the body is not JSON"}}, status=400)
        events = events if isinstance(events, list) else [events]
        kind = request.headers.get("aeg-event-type", "")
        if kind == "SubscriptionValidation":
            for event in events:
                code = (event.get("data") or {}).get("validationCode") if isinstance(event, dict) else None
                if code:
                    log.info("Event Grid subscription validated for %s", spec.name)
                    return web.json_response({"validationResponse": code})
            return web.json_response({"error": {"code": "BadRequest", "message": "no validationCode"}}, status=400)
        if kind != "Notification" and not request.headers.get("ce-specversion"):
            return web.json_response({"error": {"code": "BadRequest", "message": "aeg-event-type must be "
                                                "SubscriptionValidation or Notification"}}, status=400)
        queued = 0
        for event in events:
            work = self._blob_work(spec, event)
            if work is not None:
                self.queue.put_nowait(work)
                queued += 1
        return web.json_response({"queued": queued}, status=202)

    def _blob_work(self, spec: FunctionSpec, event: Any) -> BlobWork | None:
        if not isinstance(event, dict):
            return None
        event_type = event.get("eventType") or event.get("type")
        if event_type != "Microsoft.Storage.BlobCreated":
            return None
        data = event.get("data") or {}
        match = _SUBJECT.match(str(event.get("subject") or ""))
        if match is None:
            url = urlsplit(str(data.get("url") or ""))
            parts = unquote(url.path).lstrip("/").split("/", 2)
            if url.hostname in ("127.0.0.1", "localhost") and len(parts) == 3:
                parts = parts[1:]  # path-style loopback URL: /<account>/<container>/<blob>
            if len(parts) < 2:
                return None
            container, name = parts[0], parts[-1]
        else:
            container, name = match.group("container"), match.group("name")
        assert spec.blob_pattern is not None
        if container != spec.blob_container or not blob_pattern_regex(spec.blob_pattern).match(name):
            log.debug("%s: %s/%s does not match %s/%s", spec.name, container, name, spec.blob_container,
                      spec.blob_pattern)
            return None
        return BlobWork(spec, container, name, data.get("eTag"), str(data.get("url") or ""))

    def _storage_client(self, spec: FunctionSpec) -> BlobServiceClient:
        if self._storage is None:
            connection = spec.trigger["connection"]
            if connection in self.opts.environ:
                self._storage = BlobServiceClient.from_connection_string(self.opts.environ[connection])
            else:  # identity-based (`<connection>__accountName` ...): connect as the binding extension does
                from azurefunctions.extensions.bindings.blob.utils import service_client_factory

                self._storage = service_client_factory(connection)
            with contextlib.suppress(ResourceExistsError):
                self._storage.create_container(RECEIPTS_CONTAINER)
        return self._storage

    def _receipt(self, work: BlobWork, etag: str) -> Any:
        path = f"blobreceipts/{self.opts.host_id}/Host.Functions.{work.spec.name}/{etag.strip(chr(34))}/" \
               f"{work.container}/{work.name}"
        return self._storage_client(work.spec).get_blob_client(RECEIPTS_CONTAINER, path)

    def _process_blob(self, work: BlobWork) -> str:
        """One try at a blob (in a worker thread): skip if gone or already done; else invoke and write a receipt."""
        service = self._storage_client(work.spec)
        client = service.get_blob_client(work.container, work.name)
        try:
            props = client.get_blob_properties()
        except ResourceNotFoundError:
            return "gone"
        etag = str(props.etag)
        receipt = self._receipt(work, etag)
        key = (work.spec.name, work.container, work.name, etag)  # by version, as the host keys its receipts
        with self._in_progress_lock:
            if key in self._in_progress:  # a duplicate delivery while this version is being processed
                return "this version is being processed already"
            self._in_progress.add(key)
        work.etag = etag
        try:
            # looked at while this version is ours: a delivery that finished just before wrote its receipt first
            if receipt.exists():
                return "done before"
            try:
                self._invoke(work.spec, f"New blob detected({work.spec.blob_source}): {work.container}/{work.name}",
                             lambda: blob_argument(work.spec.parameters.get(work.spec.trigger_parameter),
                                                   work.spec.trigger["connection"], work.container, work.name,
                                                   client.url, lambda: client.download_blob().readall()),
                             retry=(work.attempt, self.opts.poison_threshold - 1))
            except Exception as exc:
                raise FunctionFailed(work.spec.name) from exc
            with contextlib.suppress(ResourceExistsError):
                receipt.upload_blob(b"", metadata={"Invocation": datetime.now(UTC).isoformat()}, overwrite=False)
        finally:
            with self._in_progress_lock:
                self._in_progress.discard(key)
        return "processed"

    def _poison(self, work: BlobWork) -> None:
        connection = work.spec.trigger["connection"]
        env = self.opts.environ
        if env.get(connection):
            queue = QueueClient.from_connection_string(env[connection], POISON_QUEUE)
        else:  # identity-based, as the host does: `<connection>__queueServiceUri` and the managed identity
            from azure.identity import ManagedIdentityCredential

            uri = env.get(f"{connection}__queueServiceUri") or \
                f"https://{env[f'{connection}__accountName']}.queue.core.windows.net"
            queue = QueueClient(uri, POISON_QUEUE, credential=ManagedIdentityCredential(
                client_id=env.get(f"{connection}__clientId")))
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        text = json.dumps({"Type": "BlobTrigger", "FunctionId": f"Host.Functions.{work.spec.name}",
                           "BlobType": "BlockBlob", "ContainerName": work.container, "BlobName": work.name,
                           "ETag": work.etag})
        # written as the storage extension writes its queues (messageEncoding), so a queue trigger on it reads it
        from tools.devhost.queues import QueueOptions

        encoded = QueueOptions(self.opts.host_json).base64
        queue.send_message(base64.b64encode(text.encode()).decode() if encoded else text)

    async def _blob_worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            work = await self.queue.get()
            try:
                outcome = await loop.run_in_executor(self.blob_pool, self._process_blob, work)
                if outcome != "processed":
                    log.info("%s: %s/%s skipped (%s)", work.spec.name, work.container, work.name, outcome)
            except Exception as exc:  # noqa: BLE001 - the function failed: retry, then poison
                if not isinstance(exc, FunctionFailed):  # the function's own failure is logged by _invoke
                    log.warning("%s: %s/%s could not be processed: %s: %s", work.spec.name, work.container,
                                work.name, type(exc).__name__, exc)
                work.attempt += 1
                if work.attempt >= self.opts.poison_threshold:
                    log.error("%s: %s/%s failed %d times; moved to the poison queue %s", work.spec.name,
                              work.container, work.name, work.attempt, POISON_QUEUE)
                    try:
                        await loop.run_in_executor(self.blob_pool, self._poison, work)
                    except Exception as exc:  # noqa: BLE001 - report, and keep the worker alive
                        log.error("%s: could not write the poison message for %s/%s: %s", work.spec.name,
                                  work.container, work.name, exc)
                else:
                    log.warning("%s: %s/%s failed (try %d of %d); trying again in %.0f s", work.spec.name,
                                work.container, work.name, work.attempt, self.opts.poison_threshold,
                                self.opts.retry_delay)
                    loop.call_later(self.opts.retry_delay, self.queue.put_nowait, work)
            finally:
                self.queue.task_done()

    # ---- timers ---------------------------------------------------------------------------------------------
    async def _timer(self, spec: FunctionSpec) -> None:
        assert spec.schedule is not None
        schedule = parse_schedule(spec.schedule)
        if spec.run_on_startup:
            await self._fire_timer(spec, past_due=False, reason="Timer fired at startup (runOnStartup)")
        while True:
            due = schedule.next_after(datetime.now(UTC))
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            late = (datetime.now(UTC) - due).total_seconds()
            await self._fire_timer(spec, past_due=late > 5, reason=f"Timer fired at {due.isoformat()}")

    async def _fire_timer(self, spec: FunctionSpec, past_due: bool, reason: str) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await loop.run_in_executor(self.pool, self._invoke, spec, reason,
                                       lambda: TimerRequest(past_due=past_due))

    # ---- admin ----------------------------------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running", "id": self.opts.host_id, "host": "devhost",
                                  "functions": sorted(self.specs), "invocations": self.invocations,
                                  "blobQueue": self.queue.qsize(), "startedAt": self.started.isoformat()})

    async def admin_invoke(self, request: web.Request) -> web.Response:
        spec = self.specs.get(request.match_info["name"])
        if spec is None or spec.trigger_type != "timerTrigger":
            return web.json_response({"error": {"code": "NotFound", "message": "no such non-HTTP function (devhost "
                                                "runs timers by hand; blobs come through the webhook)"}},
                                     status=404)
        asyncio.get_running_loop().create_task(self._fire_timer(spec, False, "This function was programmatically "
                                                                "called via the host APIs."))
        return web.Response(status=202)
