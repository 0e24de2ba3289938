"""`python -m tools.migrate_ledger [--settings local.settings.json]`: index an existing ledger's runs, once.

A ledger written before the run index (every run in one partition, read whole by reconcile and by GET /api/runs)
gets its index rows: an `active` marker for each run that still needs work, a `newest` row for every run, then the
schema row that switches the app to the index. Idempotent: run it again and the same rows are written. The reconcile
timer does the same on its first pass when the schema row is missing; this command does it at a time of your choice
(with progress), e.g. right after `azd deploy`. It runs with the app's settings: a local.settings.json (its Values
become the environment, as the Functions host makes them - so an identity-mode file's identity endpoint and CA
bundle are used too) or the environment, and reaches storage the way the app does (a connection string, or the
managed identity / your Entra ID sign-in). A problem is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shared.adapters.ledger import TableLedger
from shared.composition import identity_for
from shared.settings import SettingsError, load_settings


def _values(path: Path) -> dict[str, str]:
    """A local.settings.json's Values (strings, as the host passes them)."""
    data: Any = json.loads(path.read_text())
    values = data.get("Values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise ValueError(f"{path} has no \"Values\" object")
    return {str(k): str(v) for k, v in values.items() if v is not None}


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in the process environment while the command runs (the SDKs read the identity endpoint and the CA
    bundle from there, as under the host), as it was afterwards."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _problem(exc: BaseException) -> str:
    """One line for what went wrong (the SDKs' messages run over several lines)."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.migrate_ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, help="a local.settings.json whose Values are the app's settings "
                                                      "(default: the environment)")
    args = parser.parse_args(argv)
    try:
        values = _values(args.settings) if args.settings else None
    except (OSError, ValueError) as exc:
        print(f"migrate_ledger: {_problem(exc)}", file=sys.stderr)
        return 2
    sdk_log = logging.getLogger("azure")
    level = sdk_log.level
    sdk_log.setLevel(logging.ERROR)  # the SDKs' own multi-line warnings: the failure is said in one line below
    try:
        with _environment(values or {}):
            return _migrate(values)
    finally:
        sdk_log.setLevel(level)


def _migrate(values: dict[str, str] | None) -> int:
    try:
        settings = load_settings(values)
    except (ValueError, SettingsError) as exc:
        print(f"migrate_ledger: {_problem(exc)}", file=sys.stderr)
        return 2
    started = time.monotonic()

    def progress(count: int) -> None:
        print(f"\rmigrate_ledger: {count:,} run(s) indexed ({time.monotonic() - started:.1f} s)", end="",
              file=sys.stderr, flush=True)

    try:
        ledger = TableLedger(settings, identity_for(settings))
        already = ledger.index.ready()
        count = ledger.index.migrate(progress)
    except KeyboardInterrupt:
        print("\nmigrate_ledger: interrupted; run it again to finish (it is idempotent)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a command-line tool: one line, no traceback
        where = settings.storage_table_uri or settings.storage_account_name or "the storage account"
        print(f"\nmigrate_ledger: could not migrate the ledger in {where}: {_problem(exc)}", file=sys.stderr)
        return 1
    print(f"\nmigrate_ledger: done - {count:,} run(s) in {ledger.runs.table_name} indexed"
          f"{' (it was indexed already; rows rewritten)' if already else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
