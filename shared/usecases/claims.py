"""Keeping an invocation's claim on a run alive while it works (validating, waiting out a coalescing window): a
claim lives RETRAIN_LEASE_SECONDS unless renewed, so a dead invocation's claim is over that soon after."""

from __future__ import annotations

import time

from shared.errors import ClaimLost, Stale
from shared.ports.ledger import Ledger
from shared.records import Run


def keep_claim(ledger: Ledger, run: Run, seconds: float) -> None:
    """Renew the claim once half of it is gone; ClaimLost when another invocation took the run over."""
    if run.claimed_until - time.time() < seconds / 2:
        try:
            ledger.change(run, if_unchanged=True, claimed_until=time.time() + seconds)
        except Stale:
            raise ClaimLost(run.id) from None
