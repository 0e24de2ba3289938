"""Structured logging with run and invocation ids, and redaction of secrets wherever they would appear.

`install()` puts a `ScrubFilter` on every handler of the root logger (the Functions worker's, which sends records
to the host and Application Insights, a local console or file): every record that leaves the process - from our
code, the Azure SDKs or requests - has its message and traceback scrubbed of SAS signatures, account keys, bearer
tokens and any secret registered with `register_secret`. A handler added later (an exporter) gets it from
`protect(handler)` or another `install()`. Records carry `run_id` and `invocation_id` attributes (from context
variables) and the message is prefixed with them; a record with nothing to redact keeps its format arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
from collections.abc import Iterator

run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
invocation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)

_PATTERNS = [
    (re.compile(r"(?i)(sig=)[^&\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(sig%3D)[^&\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(AccountKey=)[^;\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(SharedAccessSignature=)[^;\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(Bearer\s+)[A-Za-z0-9+/=._~-]+"), r"\1REDACTED"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "REDACTED-JWT"),
    (re.compile(r"(?i)(aeg-sas-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1REDACTED"),
    (re.compile(r"(?i)([\"']?(?:PrimaryKey|SecondaryKey|api_key|workspace_token|topic_key)[\"']?\s*[:=]\s*[\"'])"
                r"[^\"']+"), r"\1REDACTED"),
]
# Copy-on-write under a lock: scrub() iterates whatever frozenset it finds while other threads register keys.
_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact this exact value from every log record (keys read from settings or from API responses)."""
    global _secrets
    if value and len(value) >= 8 and value not in _secrets:
        with _secrets_lock:
            _secrets = _secrets | {value}


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class ScrubFilter(logging.Filter):
    """Redacts a record before its handler emits it (once per record, whichever handler sees it first)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "retrain_scrubbed", False):
            return True
        record.retrain_scrubbed = True
        rid, iid = run_id.get(), invocation_id.get()
        record.run_id, record.invocation_id = rid, iid
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not break the app
            message, record.args = str(record.msg), ()
        clean = scrub(message)
        prefix = "".join(f"[{k}={v}] " for k, v in (("run", rid), ("invocation", iid)) if v)
        if clean != message:
            record.msg, record.args = prefix + clean, ()
        elif prefix:
            record.msg = prefix.replace("%", "%%") + str(record.msg) if record.args else prefix + message
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub(self._formatter.formatException(record.exc_info))
        return True


_FILTER = ScrubFilter()


def protect(handler: logging.Handler) -> None:
    """Scrub every record this handler emits."""
    if _FILTER not in handler.filters:
        handler.addFilter(_FILTER)


def install() -> None:
    """Put the scrubbing filter on every handler of the root logger. Safe to call again (new handlers)."""
    for handler in logging.getLogger().handlers:
        protect(handler)


@contextlib.contextmanager
def context(run: str | None = None, invocation: str | None = None) -> Iterator[None]:
    """Set the run and/or invocation id for the records logged inside the block."""
    tokens = []
    if run is not None:
        tokens.append((run_id, run_id.set(run)))
    if invocation is not None:
        tokens.append((invocation_id, invocation_id.set(invocation)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
