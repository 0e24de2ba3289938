"""Studio (classic) as a serving target: the non-default endpoints of a predictive web service. A model goes in
service by a PATCH of the endpoint's trained-model resource with a SAS location (or, for the model the service
itself holds, a refresh); it is proven by the endpoint's scoring API (`verification`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from shared.adapters.classic.clients import StudioClients
from shared.adapters.classic.errors import StudioApiError
from shared.adapters.classic.models import Endpoint, EndpointResource, ResourceLocation
from shared.adapters.classic.training import ClassicTraining
from shared.adapters.classic.verification import Verifier
from shared.adapters.sas import SasPolicy, needs_refresh
from shared.errors import AlreadyExists, ServiceError, describe
from shared.ports.blobs import BlobStore, SasPurpose
from shared.ports.serving import Answers, EndpointInfo, Keepalive, ModelRef, Observed, ServingTarget, Verdict
from shared.records import BlobRef
from shared.settings import Settings, Target

HEALTH_TIMEOUT = 5.0  # seconds: a health check says "slow" rather than being slow itself
CACHED_LOCATIONS = 64


class ClassicServing(ServingTarget):
    label = "studio"
    proves_later = True

    def __init__(self, settings: Settings, target: Target, studio: StudioClients, storage: BlobStore,
                 training: ClassicTraining) -> None:
        self.settings, self.target, self.studio, self.storage, self.training = (settings, target, studio, storage,
                                                                               training)
        self.resource = str(target.resource_name)
        self.verifier = Verifier(settings, studio, self._location_back)
        self._locations: OrderedDict[tuple[str, str | None], ResourceLocation] = OrderedDict()
        self._lock = threading.Lock()
        self.refreshed_by_get = self.minted = 0  # how the model locations were had (a job's GET, or minted)

    def info(self, ep: Endpoint) -> EndpointInfo:
        loc = ep.location(self.resource)
        return EndpointInfo(ep.Name, loc.get("RelativeLocation"), loc.get("BaseLocation"), {
            "description": ep.Description, "apiLocation": ep.ApiLocation, "throttleLevel": ep.ThrottleLevel,
            "maxConcurrentCalls": ep.MaxConcurrentCalls})

    def protected_endpoint(self) -> str | None:
        return self.studio.default_endpoint(self.target)

    def endpoint(self, name: str) -> EndpointInfo | None:
        ep = self.studio.endpoint(self.target, name)
        return self.info(ep) if ep is not None else None

    def endpoints(self) -> list[EndpointInfo]:
        return [self.info(ep) for ep in self.studio.management(self.target).list_endpoints()]

    def endpoint_names(self) -> list[str]:
        return self.studio.resolve(self.target, ["*"])

    def create_endpoint(self, name: str, options: dict[str, Any]) -> EndpointInfo:
        try:
            ep = self.studio.management(self.target).create_endpoint(
                name, options.get("description", ""), options.get("throttle_level", "Low"),
                options.get("max_concurrent_calls"))
        except StudioApiError as exc:
            if exc.status == 409:
                raise AlreadyExists(f"endpoint '{name}' exists already") from None
            raise
        return self.info(ep)

    def observe(self, name: str, smoke_row: dict[str, str] | None) -> Observed:
        before = self.studio.management(self.target).get_endpoint(name)
        answers, failing = self.verifier.answers(before, smoke_row)
        return Observed(self.info(before), answers, before, failing)

    def put_in_service(self, name: str, model: ModelRef, keepalive: Keepalive = lambda: None) -> None:
        mgmt = self.studio.management(self.target)
        location = self._location(model)
        if location is None:
            mgmt.refresh(name, overwrite_resources=True)
        else:
            mgmt.patch_model(name, self.resource, location)

    def verify(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
               keepalive: Keepalive) -> Verdict:
        return self.verifier.verify(self.target, name, model.path, smoke_row, before.answers, keepalive,
                                    before.failing)

    def verify_once(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
                    waited: float) -> Verdict | None:
        return self.verifier.once(self.target, name, model.path, smoke_row, before.answers, waited, before.failing)

    def recall(self, name: str, previous: ModelRef | None, answers: Answers | None, kept: Any = None) -> Observed:
        """The endpoint as it is now (its scoring address and key), with the previous model's location (no
        token: a fresh one is minted for our own storage, or the endpoint is refreshed) in its resource."""
        ep = self.studio.management(self.target).get_endpoint(name)
        location = {"BaseLocation": previous.base, "RelativeLocation": previous.path} if previous else None
        resources = [r for r in ep.Resources or [] if r.Name != self.resource]
        resources.append(EndpointResource(Name=self.resource, Location=location))
        before = ep.model_copy(update={"Resources": resources})
        return Observed(self.info(before), answers, before)

    def restore(self, name: str, before: Observed, smoke_row: dict[str, str] | None,
                keepalive: Keepalive) -> str | None:
        return self.verifier.restore(self.target, name, before.state, smoke_row, before.answers, keepalive)

    def check(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None) -> Verdict:
        try:
            ep = self.studio.management(self.target).get_endpoint(name)
        except ServiceError as exc:
            return Verdict(f"the check's GET failed: {describe(exc)}", transient=True,
                           throttle=exc if exc.throttling else None)
        shown = ep.model_path(self.resource)
        if shown != model.path:
            return Verdict(f"the endpoint serves {shown!r} now, not {model.path!r}")
        if smoke_row is None or not (ep.ApiLocation and ep.PrimaryKey):
            return Verdict()
        try:
            self.studio.scoring(str(ep.ApiLocation), str(ep.PrimaryKey)).score([smoke_row], max_attempts=1)
        except ServiceError as exc:
            return Verdict(f"the smoke scoring request failed: {describe(exc)}", transient=exc.transient,
                           throttle=exc if exc.throttling else None)
        return Verdict()

    def health(self) -> dict[str, Any]:
        try:
            service = self.studio.management(self.target).get_service(max_attempts=1, read_timeout=HEALTH_TIMEOUT)
            return {"ok": True, "service": service.Name}
        except ServiceError as exc:
            return {"ok": False, "error": describe(exc)}

    # ---- where a model is, with a token fresh enough to PATCH with ----------------------------------------
    def _location(self, model: ModelRef) -> ResourceLocation | None:
        """A PATCH location: the job's own (a GET of the job refreshes it), else one with a token minted for our
        own blob; None for a model outside our storage (put back by a refresh: the documented way back)."""
        base = model.base or self.storage.base
        if model.job_id is None and not self.storage.owns(base):
            return None
        key = (model.path, model.job_id)
        margin = self.storage_margin
        with self._lock:
            cached = self._locations.get(key)
            if cached is not None and not needs_refresh(cached.SasBlobToken, margin):
                return cached
            fresh = self._from_job(model)
            if fresh is not None:
                self.refreshed_by_get += 1
            else:
                self.minted += 1
                grant = self.storage.grant(BlobRef.parse(model.path), SasPurpose.SERVE_MODEL)
                fresh = ResourceLocation(BaseLocation=grant.base, RelativeLocation=grant.path,
                                         SasBlobToken=grant.token)
            self._locations[key] = fresh
            while len(self._locations) > CACHED_LOCATIONS:
                self._locations.popitem(last=False)
            return fresh

    @property
    def storage_margin(self) -> timedelta:
        return SasPolicy.from_settings(self.settings).refresh_margin

    def _from_job(self, model: ModelRef) -> ResourceLocation | None:
        if model.job_id is None:
            return None
        try:
            return self.training.model_location(model.job_id)
        except ServiceError:
            return None  # the job cannot be asked now: a token of our own does

    def _location_back(self, base: str, relative: str, token: object) -> ResourceLocation | None:
        """How to PATCH a model an endpoint served before: a fresh token for our own blob, its own token while it
        lasts, else None (a refresh)."""
        if self.storage.owns(base):
            return self._location(ModelRef(relative, base))
        if isinstance(token, str) and not needs_refresh(token, self.storage_margin):
            return ResourceLocation(BaseLocation=base, RelativeLocation=relative, SasBlobToken=token)
        return None
