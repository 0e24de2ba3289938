"""Proving a swap on a Studio (classic) endpoint, and undoing one. The real service takes a while (~30 s) to serve a
PATCHed model, and until it does the old model answers, so "the smoke request scored" proves nothing by itself. A
swap is verified when the endpoint shows the new model and either answers the smoke row differently from the old
model (proof it switched) or answers at all once the switch time has passed. An error that retrying cannot fix (the
model cannot load) fails it at once; throttling that outlasts the checks leaves it unproven, to be tried again later.
Putting the old model back is verified the same way, against the old model's answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.adapters.classic.clients import StudioClients
from shared.adapters.classic.errors import StudioApiError, TransportError
from shared.adapters.classic.models import Endpoint, ResourceLocation
from shared.errors import ServiceError, describe
from shared.ports.serving import Answers, Verdict
from shared.settings import Settings, Target


@dataclass
class Verifier:
    """Checks a swapped endpoint, and restores the model it had (`locate` says how to PATCH a model back: a
    location, or None for a refresh)."""

    settings: Settings
    studio: StudioClients
    locate: Callable[[str, str, object], ResourceLocation | None]

    def answers(self, ep: Endpoint, row: dict[str, str] | None) -> tuple[Answers | None, bool]:
        """How the endpoint answers the row now (one try): its answers, or None when it does not answer - and
        whether that is for good (an error retrying cannot fix: its model cannot load) rather than for now."""
        if row is None or not self._scorable(ep):
            return None, False
        try:
            return self.studio.scoring(str(ep.ApiLocation), str(ep.PrimaryKey)).score([row], max_attempts=1), False
        except StudioApiError as exc:
            return None, not exc.transient
        except TransportError:
            return None, False

    def verify(self, target: Target, endpoint: str, relative: str, row: dict[str, str] | None,
               old_answers: Answers | None, keepalive: Callable[[], None] = lambda: None,
               old_failing: bool = False) -> Verdict:
        """Is the new model (`relative`) the one answering, and does it answer? `keepalive` is called while it
        waits (the caller's lease)."""
        try:
            ep = self.studio.management(target).get_endpoint(endpoint)
        except (StudioApiError, TransportError) as exc:
            return Verdict(f"verification GET failed: {describe(exc)}", transient=True)
        shown = ep.model_path(str(target.resource_name))
        if shown != relative:
            return Verdict(f"the endpoint shows model {shown!r}, not {relative!r}")
        if row is None:
            return Verdict()  # nothing to score with: the GET is all the proof there is
        if not self._scorable(ep):
            return Verdict("the endpoint has no usable ApiLocation for a smoke request")
        # The model being replaced did not answer (it cannot load): its errors go on until the switch, so only an
        # error after the switch time counts against the new one.
        return self._until_answering(ep, row, lambda got: old_answers is None or got != old_answers,
                                     errors_expected=old_failing, keepalive=keepalive)

    def once(self, target: Target, endpoint: str, relative: str, row: dict[str, str] | None,
             old_answers: Answers | None, waited: float, old_failing: bool = False) -> Verdict | None:
        """One look of `verify`, `waited` seconds after the PATCH: a Verdict when decided, None when not proven
        yet. The same rules as `_until_answering`, with the caller's clock in place of a loop. A look the service
        did not let through (the GET or the smoke request throttled, timed out, unreachable) raises its
        ServiceError: the caller decides when to look again, and a 429 slows every instance down."""
        switch = self.settings.verify_switch_seconds
        ep = self.studio.management(target).get_endpoint(endpoint)
        shown = ep.model_path(str(target.resource_name))
        if shown != relative:
            return Verdict(f"the endpoint shows model {shown!r}, not {relative!r}")
        if row is None:
            return Verdict()
        if not self._scorable(ep):
            return Verdict("the endpoint has no usable ApiLocation for a smoke request")
        try:
            got = self.studio.scoring(str(ep.ApiLocation), str(ep.PrimaryKey)).score([row], max_attempts=1)
        except StudioApiError as exc:
            if exc.transient:
                raise
            if old_failing and waited < switch:
                return None  # the model being replaced cannot load either: its errors go on until the switch
            return Verdict(f"the smoke scoring request failed: {describe(exc)}")
        if len(got) != 1:
            return Verdict("the smoke scoring request returned no row")
        if old_answers is None or got != old_answers or waited >= switch:
            return Verdict()
        return None

    def _scorable(self, ep: Endpoint) -> bool:
        return bool(ep.ApiLocation and ep.PrimaryKey and self.settings.rrs_host_allowed(ep.ApiLocation))

    def _until_answering(self, ep: Endpoint, row: dict[str, str], proves: Callable[[Answers], bool],
                         errors_expected: bool = False, keepalive: Callable[[], None] = lambda: None) -> Verdict:
        """Score the row until `proves` holds, or one answer comes after the switch time. `errors_expected`: the
        model being replaced may fail (a restore), so only an error after the switch time counts."""
        switch, poll = self.settings.verify_switch_seconds, self.settings.verify_poll_seconds
        started = time.monotonic()
        last: BaseException | None = None
        while True:
            keepalive()
            asked = time.monotonic()
            try:
                got = self.studio.scoring(str(ep.ApiLocation), str(ep.PrimaryKey)).score([row], max_attempts=1)
            except StudioApiError as exc:
                if not exc.transient and not (errors_expected and asked - started < switch):
                    return Verdict(f"the smoke scoring request failed: {describe(exc)}")
                last = exc
            except TransportError as exc:
                last = exc
            else:
                if len(got) != 1:
                    return Verdict("the smoke scoring request returned no row")
                if proves(got) or asked - started >= switch:
                    return Verdict()
            if time.monotonic() - started >= 2 * switch + poll and last is not None:
                return Verdict(f"the smoke scoring request could not be made: {describe(last)}", transient=True)
            time.sleep(poll)

    def restore(self, target: Target, endpoint: str, before: Endpoint, row: dict[str, str] | None,
                old_answers: Answers | None, keepalive: Callable[[], None] = lambda: None) -> str | None:
        """Put the model the endpoint had back, and check it answers as before; None on success, else why not."""
        loc = before.location(str(target.resource_name))
        if not loc.get("RelativeLocation"):
            return "the endpoint had no model to go back to"
        mgmt = self.studio.management(target)
        try:
            location = self.locate(str(loc.get("BaseLocation") or ""), str(loc["RelativeLocation"]),
                                   loc.get("SasBlobToken"))
            if location is None:
                mgmt.refresh(endpoint, overwrite_resources=True)
            else:
                mgmt.patch_model(endpoint, str(target.resource_name), location)
        except ServiceError as exc:
            return describe(exc)
        if row is None or not self._scorable(before):
            return None
        verdict = self._until_answering(before, row, lambda got: old_answers is not None and got == old_answers,
                                        errors_expected=True, keepalive=keepalive)
        return verdict.problem
