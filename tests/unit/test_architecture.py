"""The shape of the shipped code, checked from its source: small modules and classes, imports that point one way
(entry points -> composition -> use cases -> ports -> decisions/records; adapters implement the ports and no use
case imports one, nor any SDK), no cycle, no tooling or tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "function_app.py", *sorted((ROOT / "blueprints").rglob("*.py")),
           *sorted((ROOT / "shared").rglob("*.py"))]
MAX_MODULE_LINES, MAX_CLASS_LINES = 300, 200

# Which layer may import which (a module's layer is the first prefix that matches its name).
LAYERS = [
    ("function_app", "entry"), ("blueprints", "entry"), ("shared.composition", "composition"),
    ("shared.usecases", "usecases"), ("shared.adapters", "adapters"), ("shared.ports", "ports"),
    ("shared.settings", "config"),
    ("shared.targets", "config"), ("shared.gate", "config"), ("shared.telemetry", "config"),
    ("shared.logs", "config"), ("shared.decisions", "core"), ("shared.records", "core"), ("shared.errors", "core"),
    ("shared.validation", "core"), ("shared.http_bodies", "core"), ("shared", "core"),
]
MAY_IMPORT = {
    "entry": {"entry", "composition", "usecases", "ports", "adapters", "config", "core"},
    "composition": {"usecases", "ports", "adapters", "config", "core"},
    "usecases": {"usecases", "ports", "config", "core"},
    "adapters": {"adapters", "ports", "config", "core"},
    "ports": {"ports", "config", "core"},
    "config": {"config"},
    "core": {"core", "config"},
}
# Third-party packages a layer may import (beyond the standard library): the use cases and ports speak the
# project's own words, so no SDK or HTTP client shows there.
SDK_PREFIXES = ("azure", "requests", "urllib3", "pyarrow", "opentelemetry")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> str:
    return next(lay for prefix, lay in LAYERS if name == prefix or name.startswith(prefix + "."))


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): p for p in SHIPPED}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_classes_are_small(path: Path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name} is over {MAX_MODULE_LINES} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_CLASS_LINES, f"class {node.name} is {length} lines"


def test_shipped_code_never_imports_tooling_tests_or_the_functions_sdk_below_the_entry_points():
    for name, path in MODULES.items():
        for imported in imports(path):
            assert not imported.startswith(("tools", "tests", "bench")), f"{name} imports {imported}"
            if layer(name) != "entry":
                assert not imported.startswith("azure.functions"), f"{name} imports {imported}"


def test_imports_point_one_way():
    wrong = [f"{a} ({layer(a)}) -> {b} ({layer(b)})" for a, targets in GRAPH.items() for b in targets
             if layer(b) not in MAY_IMPORT[layer(a)]]
    assert not wrong, "\n".join(wrong)


def sdk_imports(name: str, source: str) -> list[str]:
    """The SDK imports of a use case or port module (`name`), from its source."""
    if layer(name) not in ("usecases", "ports"):
        return []
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return sorted(m for m in found if m.split(".")[0] in SDK_PREFIXES)


def test_use_cases_and_ports_import_no_sdk_and_no_adapter():
    wrong = {name: sdk_imports(name, path.read_text()) for name, path in MODULES.items()}
    assert not {n: w for n, w in wrong.items() if w}
    adapters = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
                if layer(a) in ("usecases", "ports") and layer(b) == "adapters"]
    assert not adapters


def test_the_use_case_rules_catch_a_planted_import():
    planted = "from azure.core.exceptions import ResourceNotFoundError\nimport shared.adapters.ledger\n"
    assert sdk_imports("shared.usecases.intake", planted) == ["azure.core.exceptions"]
    assert layer("shared.adapters.ledger") not in MAY_IMPORT[layer("shared.usecases.intake")]
    assert sdk_imports("shared.adapters.ledger", planted) == []  # adapters may


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            assert state.get(nxt) != 1, "cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])


def test_the_checks_can_fail():
    """The graph is real: the entry points reach the use cases, which reach the adapters and decisions."""
    assert "shared.composition" in GRAPH["blueprints.runtime"]
    assert "shared.decisions" in GRAPH["shared.usecases.intake"] and "shared.ports.ledger" in GRAPH[
        "shared.usecases.intake"]
    assert layer("shared.adapters.ledger") == "adapters" and "usecases" not in MAY_IMPORT["adapters"]


FIRST_PARTY = {"shared", "blueprints", "function_app", "__future__"}


def private_imports(source: str) -> list[str]:
    """The imports in `source` of a private name of a dependency: a module path segment or an imported name that
    starts with a single `_` (`import a._b`, `from a._b import c`, `from a import _c`), first-party code aside."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue  # (a relative import is first-party)
        found += [name for name in names if name.split(".")[0] not in FIRST_PARTY
                  and any(part.startswith("_") and not part.startswith("__") for part in name.split("."))]
    return found


# The exceptions, each with its reason; the test fails when one is no longer needed.
# OpenTelemetry's logs signal exists only as `_logs` (in development upstream), and azure-monitor-opentelemetry's
# public `configure_azure_monitor(log_record_processors=...)` takes `opentelemetry.sdk._logs.LogRecordProcessor`s.
ALLOWED_PRIVATE = {
    "shared.telemetry": {"opentelemetry.sdk._logs.LogRecordProcessor", "opentelemetry.sdk._logs.ReadWriteLogRecord",
                         "opentelemetry._logs"},
}


def test_shipped_code_imports_only_public_names_of_its_dependencies():
    found = {name: set(private_imports(path.read_text())) for name, path in MODULES.items()}
    wrong = [f"{name}: {imported}" for name, names in sorted(found.items())
             for imported in sorted(names - ALLOWED_PRIVATE.get(name, set()))]
    assert not wrong, "private names of a dependency (an upgrade can break them silently):\n" + "\n".join(wrong)
    stale = [f"{name}: {imported}" for name, names in ALLOWED_PRIVATE.items()
             for imported in sorted(names - found.get(name, set()))]
    assert not stale, "allowed but no longer imported (remove from ALLOWED_PRIVATE):\n" + "\n".join(stale)


def test_the_private_import_check_can_fail():
    planted = ("from __future__ import annotations\nimport os.path\nfrom azure.data.tables import TableClient\n"
               "from azure.data.tables._error import _decode_error\nimport azure.core._pipeline\n"
               "from azure.data.tables import _table_batch, __version__\nfrom shared.adapters import _private\n"
               "from . import _sibling\n")
    assert private_imports(planted) == ["azure.data.tables._error._decode_error", "azure.core._pipeline",
                                        "azure.data.tables._table_batch"]
