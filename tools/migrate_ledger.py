"""`python -m tools.migrate_ledger [--settings local.settings.json]`: index an existing ledger's runs, once.

A ledger written before the run index (every run in one partition, read whole by reconcile and by GET /api/runs)
gets its index rows: an `active` marker for each run that still needs work, a `newest` row for every run, then the
schema row that switches the app to the index. Idempotent: run it again and the same rows are written. The reconcile
timer does the same on its first pass when the schema row is missing; this command does it at a time of your choice
(with progress), e.g. right after `azd deploy`. It runs with the app's settings: a local.settings.json (its Values)
or the environment, and reaches storage the way the app does (a connection string, or your Entra ID sign-in).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from shared.adapters.ledger import TableLedger
from shared.composition import identity_for
from shared.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.migrate_ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, help="a local.settings.json whose Values are the app's settings "
                                                      "(default: the environment)")
    args = parser.parse_args(argv)
    try:
        environ = json.loads(args.settings.read_text())["Values"] if args.settings else None
        settings = load_settings(environ)
    except (OSError, KeyError, ValueError, SettingsError) as exc:
        print(f"migrate_ledger: {exc}", file=sys.stderr)
        return 2
    ledger = TableLedger(settings, identity_for(settings))
    started = time.monotonic()
    already = ledger.index.ready()

    def progress(count: int) -> None:
        print(f"\rmigrate_ledger: {count:,} run(s) indexed ({time.monotonic() - started:.1f} s)", end="",
              file=sys.stderr, flush=True)

    count = ledger.index.migrate(progress)
    print(f"\nmigrate_ledger: done - {count:,} run(s) in {ledger.runs.table_name} indexed"
          f"{' (it was indexed already; rows rewritten)' if already else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
