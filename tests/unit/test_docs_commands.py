"""The commands in docs/local-development.md and docs/operations.md paste as printed (issue 21): no hard-coded
functions port where `make run` may have moved it, no placeholder to fill in outside a comment, the project's venv
rather than a bare `python`, and the before/after helper sequence drops new bytes under a new name each time (the
same bytes train the same model: the scores would not change). Run against a live stack by hand; this keeps them
that way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def bash_blocks(name: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


def commands(block: str) -> list[str]:
    """Each line without its trailing comment (a `#` after two spaces or more)."""
    return [re.split(r"\s{2,}#", line)[0] for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["local-development.md", "operations.md"])
def test_the_api_blocks_paste_as_printed(name):
    for block in bash_blocks(name):
        if "$API" not in block:
            continue
        lines = commands(block)
        assert not any(re.match(r"API=http://127\.0\.0\.1:7071", line) for line in lines), block
        assert any(line.startswith("API=$(") and ".local/stack.json" in line for line in lines), block
        placeholders = [p for line in lines for p in re.findall(r"<[a-z][a-z ]*>", line)]
        assert not placeholders, placeholders
        assert not any(re.search(r"(^|\s)python3? ", line) for line in lines), "a bare python"


def test_the_before_and_after_helpers_drop_new_bytes_under_a_new_name_and_wait_for_their_run():
    [block] = [b for b in bash_blocks("local-development.md") if "tools.localdev score" in b]
    lines = commands(block)
    generate = next(line for line in lines if "tools.emulator.census" in line)
    assert "$RANDOM" in generate, "the same seed makes the same file, the same model and the same scores"
    assert any("tools.localdev drop" in line for line in lines) and any("$(date +%s)" in line for line in lines)
    before, after = [i for i, line in enumerate(lines) if "tools.localdev score" in line]
    assert any(line.startswith("until ") for line in lines[before:after]), "after must wait for the run to end"
