"""Reading infra/ for the tests: every Bicep file parsed with pycep-parser; azd's substitution of the azd environment
into main.parameters.json, as azd does it; a small evaluator that follows the templates' expressions from main.bicep
through its modules (enough of ARM's functions for what the templates use; another resource's runtime property is a
placeholder); and the function app's bindings as the code declares them (indexed in a child process: a FunctionApp
indexes once per process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser
from pycep.models import BicepElement

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
# An azd environment with what a user gives `azd up` (an Azure ML target; no Studio key).
WORKSPACE_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ml/providers/"
                "Microsoft.MachineLearningServices/workspaces/ws-ml")
EXAMPLE_ENV = {
    "AZURE_ENV_NAME": "prod",
    "AZURE_LOCATION": "westeurope",
    "AZURE_ML_WORKSPACE_ID": WORKSPACE_ID,
    "RETRAIN_TARGETS": json.dumps([{
        "name": "census", "kind": "azureml", "endpoints": ["*"],
        "azureml": {"workspace_id": WORKSPACE_ID, "model_name": "census", "instance_type": "Standard_DS3_v2",
                    "instance_count": 1, "traffic_steps": [10, 100],
                    "job": {"command": "python train.py --data ${{inputs.training_data}}",
                            "environmentId": "azureml:census-train:1", "computeId": "cpu-cluster"}}}]),
}
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_AZD_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}")


class Placeholder(str):
    """A value only known at deployment (another resource's property, an ARM function's result)."""


@cache
def parsed(relative: str) -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=INFRA / relative))


def parse_text(text: str) -> dict[str, Any]:
    return dict(BicepParser().parse(text=text))


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def body(item: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's body, under its `if (...)` or `[for ...]`."""
    config = item["config"]
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return dict(config)


def resources(relative: str, type_name: str | None = None) -> dict[str, dict[str, Any]]:
    """Resources by symbolic name, each with its body as `config` (and its `condition`, when it has one)."""
    out = {}
    for name, item in parsed(relative).get("resources", {}).items():
        if type_name is not None and item["type"] != type_name:
            continue
        condition = item["config"].get("condition") if isinstance(item["config"], dict) else None
        out[name] = {**item, "config": body(item), "condition": condition}
    return out


def module_params(module: str) -> dict[str, Any]:
    """The parameters main.bicep passes to one of its modules."""
    return dict(body(parsed("main.bicep")["modules"][module])["params"])


# ---- azd: the environment into main.parameters.json ------------------------------------------------------------------
def azd_substitute(text: str, env: dict[str, str]) -> tuple[str, bool]:
    """${NAME} / ${NAME=default} as azd's envsubst does it; also whether a variable was unset."""
    unset = False

    def one(match: re.Match[str]) -> str:
        nonlocal unset
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        unset = True
        return default or ""

    return _AZD_VARIABLE.sub(one, text), unset


def azd_parameters(env: dict[str, str]) -> dict[str, Any]:
    """main.bicep's parameter values as azd resolves main.parameters.json for this azd environment (azd >= 1.23.4:
    an object/array parameter given as one "${VAR}" string is parsed as JSON; any other parameter is substituted
    into its JSON text; a parameter left empty by an unset variable is omitted, so its default applies)."""
    file = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = parsed("main.bicep")["parameters"]
    out: dict[str, Any] = {}
    for name, entry in file.items():
        kind = declared[name]["type"]
        if kind in ("object", "array") and isinstance(entry["value"], str):
            text, unset = azd_substitute(entry["value"], env)
            if text == "" and unset:
                continue
            out[name] = json.loads(text)  # azd: "value '...' is not valid JSON" otherwise
            continue
        text, unset = azd_substitute(json.dumps(entry), env)
        value = json.loads(text)["value"]  # a value with a bare quote would break here, as it does in azd
        if value == "" and unset:
            continue
        if kind == "int" and isinstance(value, str):
            value = int(value)
        if kind == "bool" and isinstance(value, str):
            value = value.lower() == "true"
        out[name] = value
    return out


# ---- the evaluator --------------------------------------------------------------------------------------------------
class Scope:
    """One template evaluated with given parameter values."""

    def __init__(self, relative: str, params: dict[str, Any]) -> None:
        self.relative = relative
        self.data = parsed(relative)
        declared = self.data.get("parameters", {})
        missing = [n for n, p in declared.items() if n not in params and p.get("default") is None]
        if missing:
            raise KeyError(f"{relative}: no value for parameter(s) {missing}")
        self.params = dict(params)
        for name, spec in declared.items():
            if name not in self.params:
                self.params[name] = self.eval(spec["default"], {})

    def variable(self, name: str) -> Any:
        return self.eval(self.data["variables"][name]["value"], {})

    def module_output(self, module: str, output: str) -> Any:
        item = self.data["modules"][module]
        path = item["detail"]["path"]
        child_relative = str((Path(self.relative).parent / path).as_posix())
        child_params = {k: self.eval(v, {}) for k, v in body(item)["params"].items()}
        child = Scope(child_relative, child_params)
        return child.eval(child.data["outputs"][output]["value"], {})

    def module_params(self, module: str) -> dict[str, Any]:
        return {k: self.eval(v, {}) for k, v in body(self.data["modules"][module])["params"].items()}

    def name(self, name: str, local: dict[str, Any]) -> Any:
        if name in local:
            return local[name]
        if name in self.params:
            return self.params[name]
        if name in self.data.get("variables", {}):
            return self.variable(name)
        if name in self.data.get("resources", {}) or name in self.data.get("modules", {}):
            return {"__symbol__": name}
        raise KeyError(f"{self.relative}: unknown name {name!r}")

    def access(self, base: Any, key: Any) -> Any:
        if isinstance(base, dict) and "__symbol__" in base:
            symbol = base["__symbol__"]
            if symbol in self.data.get("modules", {}) and key == "outputs":
                return {"__outputs__": symbol}
            return Placeholder(f"<{symbol}.{key}>")
        if isinstance(base, dict) and "__outputs__" in base:
            return self.module_output(base["__outputs__"], key)
        if isinstance(base, Placeholder):
            return Placeholder(f"{base[:-1]}.{key}>")
        if isinstance(base, dict):
            return base[key]
        if isinstance(base, list):
            return base[int(key)]
        raise TypeError(f"{self.relative}: cannot read {key!r} of {base!r}")

    def dotted(self, text: str, local: dict[str, Any]) -> Any:
        parts = text.strip().split(".")
        value = self.name(parts[0], local)
        for part in parts[1:]:
            value = self.access(value, part)
        return value

    def eval(self, expr: Any, local: dict[str, Any]) -> Any:
        if isinstance(expr, BicepElement):
            return self.name(str(expr), local)
        if isinstance(expr, str):
            if "${" not in expr:
                return expr
            return _INTERPOLATION.sub(lambda m: str(self.dotted(m.group(1), local)), expr)
        if isinstance(expr, list):
            return [self.eval(v, local) for v in expr]
        if isinstance(expr, dict) and len(expr) == 1 and "operator" in expr and isinstance(expr["operator"], dict):
            return self.operator(expr["operator"], local)
        if isinstance(expr, dict) and len(expr) == 1 and "function" in expr and isinstance(expr["function"], dict):
            return self.function(expr["function"], local)
        if isinstance(expr, dict):
            return {self.eval(k, local) if "${" in str(k) else k: self.eval(v, local) for k, v in expr.items()}
        return expr

    def operator(self, op: dict[str, Any], local: dict[str, Any]) -> Any:
        kind, ops = op["type"], op["operands"]
        if kind == "property_accessor":
            base = self.eval(ops["operand_1"], local)
            key = ops["operand_2"]
            while isinstance(key, dict) and key.get("operator", {}).get("type") == "property_accessor":
                inner = key["operator"]["operands"]
                base = self.access(base, str(inner["operand_1"]))
                key = inner["operand_2"]
            return self.access(base, str(key))
        if kind == "index_accessor":
            return self.access(self.eval(ops["operand_1"], local), self.eval(ops["operand_2"], local))
        if kind == "conditional":
            chosen = "true_value" if self.eval(ops["condition"], local) else "false_value"
            return self.eval(ops[chosen], local)
        if kind == "not":
            return not self.eval(ops["bool_value"], local)
        left, right = (self.eval(ops.get("operand_1"), local), self.eval(ops.get("operand_2"), local))
        table = {"equals": lambda: left == right, "not_equals": lambda: left != right,
                 "and": lambda: bool(left and right), "or": lambda: bool(left or right)}
        if kind in table:
            return table[kind]()
        raise NotImplementedError(f"{self.relative}: operator {kind}")

    def lam(self, spec: dict[str, Any], local: dict[str, Any]) -> Any:
        detail = spec["detail"]
        return lambda item: self.eval(detail["expression"], {**local, str(detail["var_1"]): item})

    def function(self, fn: dict[str, Any], local: dict[str, Any]) -> Any:
        kind, raw = fn["type"], fn.get("parameters") or {}
        args = [v for v in raw.values()]
        if kind == "filter":
            items, keep = self.eval(raw["input_array"], local), self.lam(raw["expression"], local)
            return [i for i in items if keep(i)]
        if kind == "toObject":
            items = self.eval(args[0], local)
            key, value = self.lam(args[1], local), self.lam(args[2], local)
            return {key(i): value(i) for i in items}
        values = [self.eval(v, local) for v in args]
        simple = {
            "union": lambda: {k: v for d in values for k, v in d.items()},
            "items": lambda: [{"key": k, "value": v} for k, v in sorted(values[0].items())],
            "empty": lambda: values[0] in ("", None, [], {}),
            "string": lambda: values[0] if isinstance(values[0], str) else json.dumps(values[0],
                                                                                      separators=(",", ":")),
            "split": lambda: str(values[0]).split(str(values[1])),
            "last": lambda: values[0][-1],
            "int": lambda: int(values[0]),
            "to_lower": lambda: str(values[0]).lower(),
            "concat": lambda: ("".join(map(str, values)) if all(isinstance(v, str) for v in values)
                               else [x for v in values for x in v]),
        }
        if kind in simple:
            return simple[kind]()
        return Placeholder(f"<{kind}()>")  # guid, uniqueString, subscription(), resourceGroup(), ...


@cache
def _main_scope(env_json: str) -> Scope:
    return Scope("main.bicep", azd_parameters(json.loads(env_json)))


def main_scope(env: dict[str, str] | None = None) -> Scope:
    return _main_scope(json.dumps(EXAMPLE_ENV if env is None else env, sort_keys=True))


def deployed_app_settings(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The function app's settings as this azd environment deploys them: main.parameters.json -> main.bicep ->
    app/function.bicep's `appsettings` resource, evaluated."""
    main = main_scope(env)
    function = Scope("app/function.bicep", main.module_params("function"))
    (config,) = [r for r in resources("app/function.bicep", "Microsoft.Web/sites/config").values()
                 if r["config"]["name"] == "appsettings"]
    return dict(function.eval(config["config"]["properties"], {}))


def app_settings_for_code(env: dict[str, str] | None = None) -> dict[str, str]:
    """The deployed settings as the app reads them (placeholders of runtime values made URL-shaped)."""
    out = {}
    for name, value in deployed_app_settings(env).items():
        out[name] = "https://resolved.example/" if isinstance(value, Placeholder) and not name.endswith(
            ("_KEY", "clientId", "CLIENT_ID", "accountName")) else str(value)
    return out


@cache
def indexed_functions() -> list[dict[str, Any]]:
    """[{name, bindings}] of function_app.app, as the Functions host indexes it."""
    code = ("import json, function_app\n"
            "print(json.dumps([{'name': f.get_function_name(), 'bindings': json.loads(f.get_function_json())"
            "['bindings']} for f in function_app.app.get_functions()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    return list(json.loads(out.stdout))
