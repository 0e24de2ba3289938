"""The app's one Pipeline, built on first use (settings are validated then, not at import, so a bad setting shows
as a clear error on the first call instead of as "0 functions loaded"), and the per-invocation log context."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

import azure.functions as func

from shared import logs
from shared.pipeline import Pipeline
from shared.services import get_services

logs.install()
# The SDKs' HTTP logging policy writes every request's headers at INFO: keep it to warnings.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


@functools.lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    services = get_services()
    services.ensure_storage()
    return Pipeline(services)


@contextlib.contextmanager
def invocation(context: func.Context | None) -> Iterator[None]:
    with logs.context(invocation=context.invocation_id if context is not None else None):
        yield
