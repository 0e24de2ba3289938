"""How a fan-out's events are packed into outbox rows: in order, at most 100 events and one table property of JSON
to a row, keyed by the events (the same group stored again is the same row)."""

from __future__ import annotations

import json

import pytest

from shared.adapters.outbox import GROUP_CHARS, GROUP_EVENTS, group_rows

pytestmark = pytest.mark.unit


def event(i: int, reason: str = "") -> tuple[str, str, str, dict[str, str], str]:
    return (f"id{i:05d}", "EndpointUpdated", f"default/ep{i}", {"endpoint": f"ep{i}", "reason": reason},
            f"2026-11-28T10:00:{i % 60:02d}.000Z")


def test_groups_hold_at_most_100_events_in_order():
    events = [event(i) for i in range(250)]
    packed = group_rows(events)
    assert [len(g.events) for g, _ in packed] == [GROUP_EVENTS, GROUP_EVENTS, 50]
    assert [e for g, _ in packed for e in g.events] == events
    for group, text in packed:
        assert [tuple(e) for e in json.loads(text)] == [tuple(json.loads(json.dumps(list(e)))) for e in group.events]


def test_a_group_fits_one_table_property():
    events = [event(i, reason="x" * 2000) for i in range(40)]  # ~2 KB of JSON each
    packed = group_rows(events)
    assert len(packed) > 1 and all(len(text) <= GROUP_CHARS for _, text in packed)
    assert sum(len(g.events) for g, _ in packed) == 40


def test_an_event_larger_than_a_group_goes_alone():
    packed = group_rows([event(0), event(1, reason="y" * (GROUP_CHARS + 10)), event(2)])
    assert [[e[0] for e in g.events] for g, _ in packed] == [["id00000"], ["id00001"], ["id00002"]]


def test_the_row_key_names_the_events():
    first, again = group_rows([event(i) for i in range(3)]), group_rows([event(i) for i in range(3)])
    other = group_rows([event(i) for i in range(1, 4)])
    assert first[0][0].row == again[0][0].row != other[0][0].row
    assert first[0][0].row.startswith("group-")
