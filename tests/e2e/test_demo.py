"""`make demo` (python -m tools.localdev.demo) as a user runs it, for both targets: the whole story runs through,
exits 0, and prints the scores before and after, the ledger history and the events it followed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.localdev.azurite import PROJECT_ROOT


@pytest.mark.parametrize("target", ["classic", "azureml"])
def test_make_demo_tells_the_whole_story_and_exits_0(target: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tools.localdev.demo", "--target", target, "--rows", "3000",
                           "--workdir", str(tmp_path / "demo")],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout
    assert re.search(r"Demo finished in [\d.]+ s: '[^']+' serves the model retrained on", out), out[-2000:]
    assert "Scores through the endpoint" in out and "Retrain.EndpointUpdated" in out, out[-2000:]
    assert "demo FAILED" not in done.stderr
