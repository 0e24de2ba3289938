"""The README's helpers without a running stack: one clear line, at once (issue 10)."""

from __future__ import annotations

import json

import pytest

from tools.localdev.__main__ import main
from tools.localdev.ports import free_port


def test_no_stack_file_says_to_start_make_run(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--stack", str(tmp_path / "stack.json"), "score", "tenant-a"])
    assert "make run" in str(info.value) and "does not exist" in str(info.value)


def test_a_stack_that_is_not_running_is_said_in_one_line(tmp_path):
    stale = tmp_path / "stack.json"
    stale.write_text(json.dumps({"ports": {"blob": free_port(), "emulator": free_port()},
                                 "storage_connection_string": "x", "emulator_manifest": "y"}))
    for command in (["score", "tenant-a"], ["drop", str(stale), "training-data/a/b.csv"]):
        with pytest.raises(SystemExit) as info:
            main(["--stack", str(stale), *command])
        assert "not running" in str(info.value) and "make run" in str(info.value)
