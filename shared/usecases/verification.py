"""Proving a swap and undoing one: after a PATCH the endpoint must show the new model and answer a smoke scoring
request; when it does not, the model it had before is put back (a fresh token when the blob is ours, else the
documented refresh from the default endpoint)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from shared.adapters.classic.errors import StudioApiError, TransportError, describe_error
from shared.adapters.classic.models import Endpoint, ResourceLocation
from shared.adapters.ledger import Ledger
from shared.adapters.sas import SasMinter, needs_refresh
from shared.adapters.studio import StudioClients
from shared.errors import Refused
from shared.records import Run
from shared.settings import Settings, Target


@dataclass
class Verifier:
    """Checks a swapped endpoint, and restores the model it had."""

    settings: Settings
    studio: StudioClients
    ledger: Ledger
    minter: SasMinter

    def verify(self, target: Target, endpoint: str, relative: str, run: Run | None) -> str | None:
        """None when the endpoint shows the new model and a smoke request scores; else what is wrong."""
        if self.settings.verify_delay_seconds:
            time.sleep(self.settings.verify_delay_seconds)
        try:
            ep = self.studio.management(target).get_endpoint(endpoint)
        except (StudioApiError, TransportError) as exc:
            return f"verification GET failed: {describe_error(exc)}"
        res = ep.resource(target.resource_name)
        shown = (res.Location or {}).get("RelativeLocation") if res else None
        if shown != relative:
            return f"the endpoint shows model {shown!r}, not {relative!r}"
        row = (run.smoke_row if run else None) or self.settings.smoke_row or self._last_smoke_row(target)
        if not row:
            return None
        if not ep.ApiLocation or not ep.PrimaryKey or not self.settings.rrs_host_allowed(ep.ApiLocation):
            return "the endpoint has no usable ApiLocation for a smoke request"
        try:
            scored = self.studio.scoring(ep.ApiLocation, ep.PrimaryKey).score([row])
        except (StudioApiError, TransportError) as exc:
            return f"the smoke scoring request failed: {describe_error(exc)}"
        if len(scored) != 1:
            return "the smoke scoring request returned no row"
        return None

    def _last_smoke_row(self, target: Target) -> dict[str, str] | None:
        for run in self.ledger.list_runs(("Finished", "Running"), limit=20):
            if run.target == target.name and run.smoke_row:
                return run.smoke_row
        return None

    def restore(self, target: Target, endpoint: str, before: Endpoint) -> str | None:
        """Put the model the endpoint had back; None on success, else why not."""
        res = before.resource(target.resource_name)
        loc = res.Location if res else None
        if not loc or not loc.get("RelativeLocation"):
            return "the endpoint had no model to go back to"
        try:
            location = self.location_for(str(loc.get("BaseLocation") or ""), str(loc["RelativeLocation"]),
                                         loc.get("SasBlobToken"))
            if location is None:
                self.studio.management(target).refresh(endpoint, overwrite_resources=True)
            else:
                self.studio.management(target).patch_model(endpoint, target.resource_name, location)
        except (StudioApiError, TransportError, Refused) as exc:
            return describe_error(exc)
        return None

    def location_for(self, base: str, relative: str, token: object = None) -> ResourceLocation | None:
        """A PATCH location for a model: a fresh token when the blob is ours, its own token while it lasts,
        else None (go back through refresh, the documented way to the default endpoint's model)."""
        if self.minter.owns(base):
            return self.minter.location(relative, timedelta(minutes=self.settings.sas_minutes))
        if isinstance(token, str) and not needs_refresh(token, timedelta(minutes=1)):
            return ResourceLocation(BaseLocation=base, RelativeLocation=relative, SasBlobToken=token)
        return None
