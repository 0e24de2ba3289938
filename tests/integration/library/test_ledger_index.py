"""The run index (shared/adapters/run_index.py) against Azurite: what reconcile and the listings read, crash
leftovers cleaned, and the migration of a ledger written without the index (by the code before it) - by the
one-off command, idempotent."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from shared.adapters import run_index
from shared.adapters.run_index import ACTIVE, META, NEWEST
from shared.decisions import ACTIVE_RUN_STATUSES
from shared.records import Run, iso
from tools.localdev.appsettings import local_settings_json
from tools.migrate_ledger import main as migrate_main


def make_run(status: str, minutes_ago: float) -> Run:
    created = iso(datetime.now(UTC) - timedelta(minutes=minutes_ago))
    return Run(id=uuid.uuid4().hex, status=status, target="default", created_at=created)  # type: ignore[arg-type]


def rows(h, partition: str) -> list[dict]:
    return list(h.app.ledger.runs.query_entities("PartitionKey eq @p", parameters={"p": partition}))


def counted_reads(h, monkeypatch) -> list[int]:
    """Entities the ledger's runs table hands back, per query and point read (what each question reads)."""
    seen: list[int] = []
    table = h.app.ledger.runs
    query = table.query_entities

    class Counted:
        def __init__(self, pages) -> None:
            self.pages = pages

        def __iter__(self):
            for page in self.by_page():
                yield from page

        def by_page(self):
            for page in self.pages.by_page():
                got = list(page)
                seen.append(len(got))
                yield iter(got)

    def counting(*args, **kwargs):
        return Counted(query(*args, **kwargs))

    get = table.get_entity

    def point_read(*args, **kwargs):
        seen.append(1)
        return get(*args, **kwargs)

    monkeypatch.setattr(table, "query_entities", counting)
    monkeypatch.setattr(table, "get_entity", point_read)
    return seen


def test_a_new_ledger_is_indexed_and_each_question_reads_what_it_returns(harness, monkeypatch):
    h = harness()
    led = h.app.ledger
    assert led.index.ready(), "an empty ledger is marked indexed when its tables are ensured"
    done = [make_run("Deployed", 300 - i) for i in range(120)]
    live = [make_run("Training", 50 - i) for i in range(3)]
    for run in done + live:
        led.create_run(run)
    assert {r["RowKey"] for r in rows(h, ACTIVE)} == {r.id for r in live}
    assert len(rows(h, NEWEST)) == len(done + live)
    led.unfinished_runs(ACTIVE_RUN_STATUSES)  # the first pass of a day also sweeps for unmarked runs
    reads = counted_reads(h, monkeypatch)
    assert [r.id for r in led.unfinished_runs(ACTIVE_RUN_STATUSES)] == [r.id for r in live]
    assert sum(reads) <= 2 * len(live) + 1, reads  # the markers, their runs, the sweep's date: nothing finished
    reads.clear()
    newest = led.list_runs(limit=5)
    assert [r.id for r in newest] == [r.id for r in reversed(live)] + [r.id for r in reversed(done)][:2]
    assert sum(reads) <= 14 + 14, reads  # one page of the index and the runs on it, not the whole history
    reads.clear()
    assert [r.id for r in led.list_runs(("Training",), limit=2)] == [live[2].id, live[1].id]
    assert sum(reads) <= 2 * len(live) + 1, reads


def test_a_run_written_terminal_loses_its_marker_and_leftovers_of_a_crash_are_cleaned(harness, monkeypatch):
    h = harness()
    led = h.app.ledger
    run, _ = led.create_run(make_run("Accepted", 1))
    led.change(run, "Failed", "test")
    assert run.id not in {r["RowKey"] for r in rows(h, ACTIVE)}
    # a crash between the terminal write and the marker's removal: the next read removes it
    led.runs.upsert_entity({"PartitionKey": ACTIVE, "RowKey": run.id, "createdAt": run.created_at})
    # a crash after the marker, before the run row: dropped once it is older than the grace period
    led.runs.upsert_entity({"PartitionKey": ACTIVE, "RowKey": "never-created", "createdAt": run.created_at})
    monkeypatch.setattr(run_index, "STALE_MARKER_SECONDS", 0)
    assert led.unfinished_runs(ACTIVE_RUN_STATUSES) == []
    assert rows(h, ACTIVE) == []


def test_a_redelivered_run_keeps_one_newest_row(harness):
    h = harness()
    led = h.app.ledger
    first, created = led.create_run(make_run("Accepted", 5))
    again = first.model_copy(update={"created_at": iso(datetime.now(UTC))})
    stored, created_again = led.create_run(again)
    assert created and not created_again and stored.created_at == first.created_at
    assert [r["runId"] for r in rows(h, NEWEST)] == [first.id]


def test_the_migration_command_indexes_a_ledger_written_without_the_index_and_is_idempotent(harness, tmp_path,
                                                                                            capsys):
    h = harness()
    led = h.app.ledger
    runs = [make_run("Deployed", 500 - i) for i in range(250)] + [make_run("Training", 3), make_run("Trained", 2)]
    for run in runs:
        led.create_run(run)
    # The ledger as the code before the index wrote it: run rows only (their format is unchanged), no index rows,
    # no schema row; and a row of the older lifecycle (Running) that still needs work.
    for partition in (ACTIVE, NEWEST, META):
        for row in rows(h, partition):
            led.runs.delete_entity(partition, row["RowKey"])
    legacy = make_run("Accepted", 1)
    led.runs.create_entity({**json.loads(legacy.model_dump_json(exclude_none=True)), "PartitionKey": "run",
                            "RowKey": legacy.id, "status": "Running"})
    fresh = type(led)(h.settings)
    assert not fresh.index.ready()
    before = {r.id for r in fresh.unfinished_runs(ACTIVE_RUN_STATUSES)}  # the full scan, until migrated
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(local_settings_json({**_values(h)}))
    assert migrate_main(["--settings", str(settings_file)]) == 0
    assert "253 run(s)" in capsys.readouterr().err
    first = (sorted(r["RowKey"] for r in rows(h, ACTIVE)), sorted(r["RowKey"] for r in rows(h, NEWEST)))
    assert migrate_main(["--settings", str(settings_file)]) == 0  # again: the same rows
    assert (sorted(r["RowKey"] for r in rows(h, ACTIVE)), sorted(r["RowKey"] for r in rows(h, NEWEST))) == first
    migrated = type(led)(h.settings)
    assert migrated.index.ready()
    after = {r.id for r in migrated.unfinished_runs(ACTIVE_RUN_STATUSES)}
    assert after == before == {runs[-2].id, runs[-1].id, legacy.id}
    assert [r.id for r in migrated.list_runs(limit=3)] == [legacy.id, runs[-1].id, runs[-2].id]


def _values(h) -> dict[str, str]:
    from tools.localdev.appsettings import settings_from_manifest

    return settings_from_manifest(h.manifest, RETRAIN_TABLE_PREFIX=h.settings.table_prefix)
