"""Where a model is, and a SAS location for it that is fresh enough to PATCH with.

For a BES run the location comes from the job's Results; when its token has expired (or will within the margin)
the job is GET again - the documented way to a fresh token - and only then is a token minted by the app.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from shared.adapters.classic.errors import StudioApiError, TransportError, describe_error
from shared.adapters.classic.models import ResourceLocation
from shared.adapters.sas import SasMinter, needs_refresh
from shared.adapters.studio import StudioClients
from shared.errors import Refused
from shared.settings import Settings, Target

log = logging.getLogger("shared.usecases.model_source")


class ModelSource:
    def __init__(self, settings: Settings, minter: SasMinter, studio: StudioClients, relative: str,
                 base: str | None = None, target: Target | None = None, job_id: str | None = None,
                 results_location: ResourceLocation | None = None, by_refresh: bool = False) -> None:
        self.settings = settings
        self.minter = minter
        self.studio = studio
        self.relative = relative.lstrip("/")
        self.base = base or minter.base_location
        self.target = target
        self.job_id = job_id
        self._location = results_location
        self.by_refresh = by_refresh  # the default endpoint's model: put back by a refresh, not a PATCH
        self._lock = threading.Lock()
        self.refreshed_by_get = 0
        self.minted = 0

    def location(self) -> ResourceLocation:
        margin = timedelta(minutes=self.settings.sas_refresh_margin_minutes)
        with self._lock:
            if self._location is not None and not needs_refresh(self._location.SasBlobToken, margin):
                return self._location
            refreshed = self._from_job(margin)
            if refreshed is not None:
                self.refreshed_by_get += 1
                self._location = refreshed
                return refreshed
            if not self.minter.owns(self.base):
                raise Refused(f"the model at {self.base}{self.relative} is not in this app's storage account: "
                              "no fresh SAS token can be made for it", "ModelNotReachable", conflict=True)
            self.minted += 1
            self._location = self.minter.location(self.relative, timedelta(minutes=self.settings.sas_minutes))
            return self._location

    def _from_job(self, margin: timedelta) -> ResourceLocation | None:
        """The model's location with a fresh token from a GET of its BES job, when it has one."""
        if not self.job_id or self.target is None:
            return None
        try:
            status = self.studio.bes(self.target).get(self.job_id)
        except (StudioApiError, TransportError) as exc:
            log.info("could not refresh the model token from job %s (%s); minting one", self.job_id,
                     describe_error(exc))
            return None
        ref = (status.Results or {}).get(self.settings.model_output)
        if ref is None or not ref.SasBlobToken or not ref.BaseLocation or needs_refresh(ref.SasBlobToken, margin):
            return None
        return ResourceLocation(BaseLocation=ref.BaseLocation, RelativeLocation=ref.RelativeLocation,
                                SasBlobToken=ref.SasBlobToken)
