"""Reading infra/ for the tests: every Bicep file parsed with pycep-parser, a small evaluator that follows a
setting's value from function.bicep through main.bicep's module parameters to main's parameters, and the function
app's bindings as the code declares them (indexed in a child process: a FunctionApp indexes once per process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
# Values for main.bicep's parameters that have no default (what a user gives `azd up`), in the real shapes.
EXAMPLES = {
    "environmentName": "prod",
    "location": "westeurope",
    "besUrl": "https://ussouthcentral.services.azureml.net/workspaces/ws1/services/svc1/jobs?api-version=2.0",
    "besKey": "example-bes-key",
    "managementUrl": "https://management.azureml.net/workspaces/ws1/webservices/pred1",
    "managementKey": "example-management-key",
    "resourceName": "Census Model [trained model]",
}
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


@cache
def parsed(relative: str) -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=INFRA / relative))


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def resources(relative: str, type_name: str | None = None) -> dict[str, dict[str, Any]]:
    """Resources by symbolic name; a conditional one (`if (...)`) has its body under `config` like the others."""
    found = parsed(relative).get("resources", {})
    out = {}
    for name, item in found.items():
        if type_name is not None and item["type"] != type_name:
            continue
        config = item["config"]
        if "condition" in config and "config" in config and "loop_type" not in config:
            item = {**item, "config": config["config"], "condition": config["condition"]}
        out[name] = item
    return out


def module_params(module: str) -> dict[str, Any]:
    """The parameters main.bicep passes to one of its modules."""
    return dict(parsed("main.bicep")["modules"][module]["config"]["params"])


def _main_value(expr: Any) -> Any:
    main = parsed("main.bicep")
    if isinstance(expr, str) and expr in main.get("parameters", {}):
        default = main["parameters"][expr]["default"]
        return default if default is not None else EXAMPLES[expr]
    if isinstance(expr, str):
        return _INTERPOLATION.sub(lambda m: str(_main_value(m.group(1))), expr)
    if isinstance(expr, dict):  # a function call or another module's output: a resolved value at deploy time
        return "https://resolved.example/"
    return expr


def setting_value(module: str, expr: Any) -> str:
    """What an app setting's expression in `app/<module>.bicep` evaluates to (outputs of other resources become
    a placeholder URL)."""
    params = parsed(f"app/{module}.bicep").get("parameters", {})
    if isinstance(expr, str) and expr in params:
        return str(_main_value(module_params(module)[expr]))
    if isinstance(expr, str):
        return _INTERPOLATION.sub(lambda m: setting_value(module, m.group(1)), expr)
    if isinstance(expr, dict):
        return "https://resolved.example/"
    return str(expr).lower() if isinstance(expr, bool) else str(expr)


def app_settings() -> dict[str, Any]:
    """The function app's settings as written in function.bicep (raw expressions)."""
    (config,) = [r for r in resources("app/function.bicep", "Microsoft.Web/sites/config").values()
                 if r["config"]["name"] == "appsettings"]
    return dict(config["config"]["properties"])


def evaluated_app_settings() -> dict[str, str]:
    return {name: setting_value("function", expr) for name, expr in app_settings().items()}


@cache
def indexed_functions() -> list[dict[str, Any]]:
    """[{name, bindings}] of function_app.app, as the Functions host indexes it."""
    code = ("import json, function_app\n"
            "print(json.dumps([{'name': f.get_function_name(), 'bindings': json.loads(f.get_function_json())"
            "['bindings']} for f in function_app.app.get_functions()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    return list(json.loads(out.stdout))
