"""Keeping an invocation's claim on a run alive while it works (validating, waiting out a coalescing window): a
claim lives RETRAIN_LEASE_SECONDS unless renewed, so a dead invocation's claim is over that soon after."""

from __future__ import annotations

import time

from azure.core.exceptions import ResourceModifiedError

from shared.adapters.ledger import Ledger
from shared.errors import ClaimLost
from shared.records import Run


def keep_claim(ledger: Ledger, run: Run, seconds: float) -> None:
    """Renew the claim once half of it is gone; ClaimLost when another invocation took the run over."""
    if run.claimed_until - time.time() < seconds / 2:
        run.claimed_until = time.time() + seconds
        try:
            ledger.save_run(run)
        except ResourceModifiedError:
            raise ClaimLost(run.id) from None
