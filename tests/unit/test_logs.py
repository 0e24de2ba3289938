"""Scrubbing is a filter on the handlers records leave through (the Functions worker's own, an exporter's), not a
replacement of the process-wide record factory; records with nothing to redact keep their structure."""

from __future__ import annotations

import logging

from shared import logs


class Collect(logging.Handler):
    """Stands in for a handler that ships records out of the process (the worker's, an exporter's)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_install_puts_the_filter_on_root_handlers_and_leaves_the_record_factory_alone():
    shipped = Collect()
    root = logging.getLogger()
    root.addHandler(shipped)
    try:
        logs.install()
        assert logging.getLogRecordFactory() is logging.LogRecord
        logs.register_secret("worker-path-secret-123")
        logging.getLogger("test.worker").warning("key %s url %s", "worker-path-secret-123", "https://x/y?sig=abc")
        text = shipped.format(shipped.records[-1])
        assert "worker-path-secret-123" not in text and "sig=abc" not in text and "sig=REDACTED" in text
    finally:
        root.removeHandler(shipped)


def test_a_handler_added_later_is_protected_by_protect():
    late = Collect()
    logger = logging.getLogger("test.late")
    logger.addHandler(late)
    logger.propagate = False
    try:
        logger.warning("AccountKey=abcdEFGH12345==;")
        assert "abcdEFGH12345" in late.format(late.records[-1])  # unprotected: proves the filter does the work
        logs.protect(late)
        logger.warning("AccountKey=abcdEFGH12345==;")
        assert "abcdEFGH12345" not in late.format(late.records[-1])
    finally:
        logger.removeHandler(late)
        logger.propagate = True


def test_a_clean_record_keeps_its_arguments_and_gains_the_context_ids():
    handler = Collect()
    logs.protect(handler)
    logger = logging.getLogger("test.structured")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with logs.context(run="r9", invocation="i9"):
            logger.info("run %s took %d ms", "r9", 12)
        record = handler.records[-1]
        assert record.args == ("r9", 12)
        assert record.getMessage() == "[run=r9] [invocation=i9] run r9 took 12 ms"
        assert (getattr(record, "run_id", None), getattr(record, "invocation_id", None)) == ("r9", "i9")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
