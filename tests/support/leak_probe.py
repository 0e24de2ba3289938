"""Run only by tests/unit/test_suite_log_check.py (explicitly, in a child pytest): logs Azurite's well-known
account key (nothing registers it with the app's redaction here) when LEAK_PROBE is set, so the suite's secret
check has something to find."""

import logging
import os


def test_logs_what_it_is_told() -> None:
    if os.environ.get("LEAK_PROBE"):
        from tools.localdev.azurite import ACCOUNT_KEY

        logging.getLogger("probe").warning("the probe's key: %s", ACCOUNT_KEY)
