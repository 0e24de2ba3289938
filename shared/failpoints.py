"""Named points where a test makes the process die on purpose (`RETRAIN_FAILPOINT=<name>`), to prove that what a
crash leaves behind is recovered. Inert unless that variable names the point; nothing sets it in Azure."""

from __future__ import annotations

import logging
import os

# The crash test's steps: classic's, then Azure ML's (a new deployment Succeeded with no traffic; its first traffic
# step taken, not yet checked)
POINTS = ("after-accept", "mid-validation", "after-submit", "after-patch", "mid-fanout",
          "azureml-deployment-created", "azureml-traffic-step",
          "queue-mid-batch")  # a queued batch's endpoints put in service, none proven, no proof message sent
EXIT_CODE = 86


def reached(name: str) -> None:
    """Die here, now, without cleanup (as a killed host would), when the failpoint names this point."""
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}: the crash test covers {', '.join(POINTS)}")
    if os.environ.get("RETRAIN_FAILPOINT") == name:
        logging.getLogger("shared.failpoints").critical("failpoint %s reached: the process exits", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_CODE)
