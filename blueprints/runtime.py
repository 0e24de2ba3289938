"""What every entry point shares: the app's one `Retraining` (built on first use, so a bad setting shows as a clear
error on the first call instead of as "0 functions loaded"), log scrubbing on the host's handlers, and the
per-invocation log context."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import azure.functions as func

from shared import logs, telemetry
from shared.composition import Retraining
from shared.composition import retraining as _retraining

telemetry.configure()  # Application Insights, when APPLICATIONINSIGHTS_CONNECTION_STRING is set
logs.install()
# The SDKs' HTTP logging policy writes every request's headers at INFO: keep it to warnings.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)  # a line per token otherwise


def retraining() -> Retraining:
    """The library for triggers and the timer (the full retry budgets)."""
    return _retraining()


def retraining_for_http() -> Retraining:
    """The library for an operator's HTTP call (short retry budgets: it answers, at worst with Retry-After)."""
    return _retraining(interactive=True)


@contextlib.contextmanager
def invocation(context: func.Context | None) -> Iterator[None]:
    name = context.function_name if context is not None else "invocation"
    with logs.context(invocation=context.invocation_id if context is not None else None), \
            telemetry.span(name, **({"faas.invocation_id": context.invocation_id} if context is not None else {})):
        yield
