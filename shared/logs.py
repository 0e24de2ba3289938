"""Structured logging with run and invocation ids, and redaction of secrets wherever they would appear.

`install()` wraps the log-record factory, so every record - from our code, the Azure SDKs or requests - has its
message, arguments and traceback scrubbed of SAS signatures, account keys, bearer tokens and any secret value
registered with `register_secret`, before any handler sees it. Records carry `run_id` and `invocation_id`
attributes (from context variables) and the message is prefixed with them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
invocation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)

_PATTERNS = [
    (re.compile(r"(?i)(sig=)[^&\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(sig%3D)[^&\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(AccountKey=)[^;\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(SharedAccessSignature=)[^;\s\"'<>]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(Bearer\s+)[A-Za-z0-9+/=._~-]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(aeg-sas-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1REDACTED"),
    (re.compile(r"(?i)([\"']?(?:PrimaryKey|SecondaryKey|api_key|workspace_token|topic_key)[\"']?\s*[:=]\s*[\"'])"
                r"[^\"']+"), r"\1REDACTED"),
]
# Copy-on-write under a lock: scrub() iterates whatever frozenset it finds while other threads register keys.
_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()
_installed = False


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


def install() -> None:
    """Scrub every log record at creation and attach the context ids. Safe to call more than once."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not break the app
            message = str(record.msg)
        rid, iid = run_id.get(), invocation_id.get()
        prefix = "".join(f"[{k}={v}] " for k, v in (("run", rid), ("invocation", iid)) if v)
        record.msg = prefix + scrub(message)
        record.args = None
        record.run_id, record.invocation_id = rid, iid
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub(formatter.formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


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
