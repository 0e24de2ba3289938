"""Benchmark: one entity-group transaction of 100 operations (the fan-out's size), the SDK's `submit_transaction`
beside `shared.adapters.transactions.submit_transaction` (the same operations and pipeline; the multipart framing
and the reading of the answer done without the email package), against Azurite in memory. CPU time of this
process per transaction (what a CPU-bound fan-out pays), and wall time.

    python -m bench.ledger_transactions [--rounds 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.transactions import submit_transaction
from shared.adapters.transport import pooled_transport
from tools.localdev.azurite import Azurite

OPERATIONS = 100


def operations(kind: str, partition: str) -> list[Any]:
    """100 operations shaped like the fan-out's rows (a lease or an attempt: ~20 properties)."""
    rows = [{"PartitionKey": partition, "RowKey": f"ep{i:05d}|run-{uuid.uuid4().hex[:8]}", "outcome": "Pending",
             "modelPath": "models/0123456789abcdef/model.ilearner", "metric": 0.873, "durationMs": 1234,
             "leaseOwner": uuid.uuid4().hex, "leaseUntil": time.time() + 30, "trigger": "bench",
             "reason": "", "dataTime": "2026-11-28T10:00:00.000Z"} for i in range(OPERATIONS)]
    if kind == "create":
        return [("create", r) for r in rows]
    return [("upsert", r, {"mode": UpdateMode.REPLACE}) for r in rows]


def measure(send: Callable[[TableClient, list[Any]], Any], table: TableClient, kind: str,
            rounds: int) -> tuple[float, float]:
    batches = [operations(kind, f"{kind}-{uuid.uuid4().hex[:6]}") for _ in range(rounds)]
    send(table, operations(kind, "warm-up"))
    cpu, wall = time.process_time(), time.perf_counter()
    for ops in batches:
        send(table, ops)
    return (time.process_time() - cpu) / rounds * 1000, (time.perf_counter() - wall) / rounds * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-tx-"))
    rows = []
    with Azurite(work / "azurite", extra_args=["--inMemoryPersistence"]) as azurite:
        service = TableServiceClient.from_connection_string(azurite.connection_string, transport=pooled_transport(8))
        table = service.create_table(f"tx{uuid.uuid4().hex[:10]}")
        sdk: Callable[[TableClient, list[Any]], Any] = lambda t, ops: t.submit_transaction(ops)  # noqa: E731
        for kind in ("create", "upsert"):
            print(f"{kind}: {args.rounds} transactions each way ...", flush=True)
            theirs = measure(sdk, table, kind, args.rounds)
            ours = measure(submit_transaction, table, kind, args.rounds)
            rows.append((kind, theirs, ours))
    print(f"\nOne transaction of {OPERATIONS} operations, mean of {args.rounds} (Azurite in memory, this machine)")
    print("| operations | SDK CPU (ms) | ours CPU (ms) | CPU saved | SDK wall (ms) | ours wall (ms) |")
    print("|---|---|---|---|---|---|")
    for kind, (t_cpu, t_wall), (o_cpu, o_wall) in rows:
        print(f"| {OPERATIONS} x {kind} | {t_cpu:.1f} | {o_cpu:.1f} | {t_cpu / o_cpu:.1f}x | {t_wall:.1f} "
              f"| {o_wall:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
