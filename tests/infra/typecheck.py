"""Every resource in infra/ checked against Microsoft's published type definitions (the Bicep compiler's own:
Azure/bicep-types-az's generated types.json, the subset kept under tests/infra/types/ - see its README).

For each resource the template declares (parsed with pycep-parser), its body is walked against the resource type's
body type at the declared api-version: an unknown property, a value of the wrong type, a literal outside an enum or
a pattern/length/range, a missing required property, or a read-only property set is a problem. What can be known
without evaluating ARM functions is checked: literals fully; an identifier by its declared parameter type; an
interpolated string as a string; a ternary on both branches; a function call by the type it returns where that is
fixed (guid, union, int, ...), otherwise not at all. An `existing` resource must name a type/api-version that exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep.models import BicepElement

HERE = Path(__file__).resolve().parent / "types"
REQUIRED, READ_ONLY = 1, 2
BICEP_KEYWORDS = {"parent", "scope", "dependsOn"}  # resource-body keys Bicep itself handles, not ARM properties
STRING_FUNCTIONS = {"guid", "concat", "format", "to_lower", "toLower", "to_upper", "toUpper", "unique_string",
                    "uniqueString", "subscription_resource_id", "subscriptionResourceId", "resource_id", "resourceId",
                    "string", "last", "first", "replace", "substring", "trim", "tenant_resource_id",
                    "extension_resource_id", "base64", "uri"}
OBJECT_FUNCTIONS = {"union", "toObject", "to_object", "json", "intersection"}
INT_FUNCTIONS = {"int", "length", "min", "max"}
BOOL_FUNCTIONS = {"empty", "contains", "bool", "equals"}
PARAM_KINDS = {"string": "string", "int": "integer", "bool": "boolean", "object": "object", "array": "array"}


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@cache
def _type_files() -> dict[str, tuple[list[dict[str, Any]], int]]:
    """'namespace/type@version' (lower case) -> (types, index of its body type)."""
    out: dict[str, tuple[list[dict[str, Any]], int]] = {}
    for path in sorted(HERE.glob("*/*/types.json")):
        types = json.loads(path.read_text())
        for item in types:
            if item.get("$type") == "ResourceType":
                out[item["name"].lower()] = (types, int(item["body"]["$ref"][2:]))
    return out


def used_resource_types(files: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(item["type"], item["api_version"]) for data in files for item in data.get("resources", {}).values()}


def _is_expression(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("function", "operator")
            and isinstance(next(iter(value.values())), dict))


class Checker:
    """Checks one parsed Bicep file."""

    def __init__(self, data: dict[str, Any], label: str) -> None:
        self.data, self.label = data, label
        self.params = {n: p.get("type") for n, p in data.get("parameters", {}).items()}
        self.variables = {n: v.get("value") for n, v in data.get("variables", {}).items()}
        self.problems: list[Problem] = []

    # -- what a value is, as far as can be known --------------------------------------------------------------------
    def kind(self, value: Any, depth: int = 0) -> str | None:
        """'string' | 'integer' | 'boolean' | 'object' | 'array' | 'null' | None (unknown)."""
        if depth > 20:
            return None
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "integer"
        if isinstance(value, BicepElement):
            name = str(value)
            if name in self.params:
                return PARAM_KINDS.get(str(self.params[name]))
            if name in self.variables:
                return self.kind(self.variables[name], depth + 1)
            return None
        if isinstance(value, str):
            return "string"
        if isinstance(value, list):
            return "array"
        if _is_expression(value):
            if "function" in value:
                name = value["function"].get("type")
                for names, result in ((STRING_FUNCTIONS, "string"), (OBJECT_FUNCTIONS, "object"),
                                      (INT_FUNCTIONS, "integer"), (BOOL_FUNCTIONS, "boolean")):
                    if name in names:
                        return result
            return None
        if isinstance(value, dict):
            return "object"
        return None

    def literal(self, value: Any) -> bool:
        """A value written out in the template (no identifier, no interpolation, no call)."""
        return (isinstance(value, (bool, int)) or value is None
                or (isinstance(value, str) and not isinstance(value, BicepElement) and "${" not in value))

    # -- the walk -----------------------------------------------------------------------------------------------------
    def check(self, types: list[dict[str, Any]], ref: int, value: Any, where: str) -> None:
        node = types[ref]
        kind = node["$type"]
        if _is_expression(value) and value.get("operator", {}).get("type") == "conditional":
            operands = value["operator"]["operands"]
            for branch in ("true_value", "false_value"):
                if operands[branch] is not None:  # null: the property is left out
                    self.check(types, ref, operands[branch], where)
            return
        if isinstance(value, BicepElement) and str(value) in self.variables:
            value_of_var = self.variables[str(value)]
            if not _is_expression(value_of_var) and not isinstance(value_of_var, BicepElement):
                self.check(types, ref, value_of_var, where)
                return
        actual = self.kind(value)
        if kind == "AnyType" or actual is None:
            return
        if kind == "UnionType":
            self._union(types, node, value, where, actual)
        elif kind == "StringLiteralType":
            if actual != "string":
                self.fail(where, f"expected the string '{node['value']}', got {actual}")
            elif self.literal(value) and value != node["value"]:
                self.fail(where, f"{value!r} is not the allowed value '{node['value']}'")
        elif kind == "StringType":
            if actual != "string":
                self.fail(where, f"expected a string, got {actual}")
            elif self.literal(value):
                self._string_limits(node, value, where)
        elif kind == "IntegerType":
            if actual != "integer":
                self.fail(where, f"expected an integer, got {actual}")
            elif self.literal(value) and (value < node.get("minValue", value) or value > node.get("maxValue", value)):
                self.fail(where, f"{value} is outside {node.get('minValue')}..{node.get('maxValue')}")
        elif kind == "BooleanType":
            if actual != "boolean":
                self.fail(where, f"expected a boolean, got {actual}")
        elif kind == "ArrayType":
            if actual != "array":
                self.fail(where, f"expected an array, got {actual}")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    self.check(types, int(node["itemType"]["$ref"][2:]), item, f"{where}[{i}]")
        elif kind in ("ObjectType", "DiscriminatedObjectType"):
            if actual != "object":
                self.fail(where, f"expected an object, got {actual}")
            elif isinstance(value, dict) and not _is_expression(value):
                self._object(types, node, value, where)
        elif kind == "NullType" and actual != "null":
            self.fail(where, f"expected null, got {actual}")

    def _union(self, types: list[dict[str, Any]], node: dict[str, Any], value: Any, where: str, actual: str) -> None:
        elements = [types[int(e["$ref"][2:])] for e in node["elements"]]
        allowed = [e["value"] for e in elements if e["$type"] == "StringLiteralType"]
        open_string = any(e["$type"] == "StringType" for e in elements)
        if actual == "string" and allowed and not open_string:
            if self.literal(value) and value not in allowed:
                self.fail(where, f"{value!r} is not one of {allowed}")
            return
        trial = Checker(self.data, self.label)
        for element in node["elements"]:
            trial.problems = []
            trial.check(types, int(element["$ref"][2:]), value, where)
            if not trial.problems:
                return
        self.fail(where, f"{actual} value matches none of the union's types")

    def _string_limits(self, node: dict[str, Any], value: str, where: str) -> None:
        if "minLength" in node and len(value) < node["minLength"]:
            self.fail(where, f"{value!r} is shorter than {node['minLength']}")
        if "maxLength" in node and len(value) > node["maxLength"]:
            self.fail(where, f"{value!r} is longer than {node['maxLength']}")
        if "pattern" in node and not re.search(node["pattern"], value):
            self.fail(where, f"{value!r} does not match {node['pattern']}")

    def _object(self, types: list[dict[str, Any]], node: dict[str, Any], value: dict[str, Any], where: str) -> None:
        properties = dict(node.get("properties", {}))
        additional = node.get("additionalProperties")
        if node["$type"] == "DiscriminatedObjectType":
            properties = dict(node.get("baseProperties", {}))
            chosen = value.get(node["discriminator"])
            elements = node["elements"]
            if self.literal(chosen) and chosen in elements:
                branch = types[int(elements[chosen]["$ref"][2:])]
                properties.update(branch.get("properties", {}))
                additional = branch.get("additionalProperties")
            elif self.literal(chosen):
                self.fail(f"{where}.{node['discriminator']}", f"{chosen!r} is not one of {sorted(elements)}")
                return
            else:  # an expression picks the branch: any branch's properties may appear
                for element in elements.values():
                    properties.update(types[int(element["$ref"][2:])].get("properties", {}))
        for key, item in value.items():
            path = f"{where}.{key}"
            if key in properties:
                spec = properties[key]
                flags = int(spec.get("flags", 0))
                if flags & READ_ONLY and not flags & REQUIRED:
                    self.fail(path, "read-only property set")
                    continue
                self.check(types, int(spec["type"]["$ref"][2:]), item, path)
            elif additional is not None:
                self.check(types, int(additional["$ref"][2:]), item, path)
            elif isinstance(key, BicepElement) or "${" in str(key):
                continue  # a computed key: unknowable here
            else:
                known = sorted(k for k, s in properties.items() if not int(s.get("flags", 0)) & READ_ONLY)
                self.fail(path, f"unknown property (known: {', '.join(known)})")
        for key, spec in properties.items():
            if int(spec.get("flags", 0)) & REQUIRED and key not in value and key not in ("name",):
                self.fail(f"{where}.{key}", "missing required property")

    def fail(self, where: str, message: str) -> None:
        self.problems.append(Problem(f"{self.label}: {where}", message))

    # -- resources --------------------------------------------------------------------------------------------
    def resources(self) -> list[Problem]:
        known = _type_files()
        for symbol, item in self.data.get("resources", {}).items():
            full = f"{item['type']}@{item['api_version']}"
            where = f"{symbol} ({full})"
            if full.lower() not in known:
                self.fail(where, "no such resource type/api-version in the published types (or not extracted: "
                                 "run tests/infra/types/extract.py)")
                continue
            types, body = known[full.lower()]
            config = item["config"]
            while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
                config = config["config"]
            if item.get("existing"):
                extra = set(config) - {"name", "scope", "parent"}
                if extra:
                    self.fail(where, f"an existing resource takes only name/scope/parent, not {sorted(extra)}")
                continue
            self.check(types, body, {k: v for k, v in config.items() if k not in BICEP_KEYWORDS}, where)
        return self.problems


def check_file(data: dict[str, Any], label: str) -> list[Problem]:
    return Checker(data, label).resources()


def coverage(data: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(symbol, Type@version, number of property paths written) for each non-existing resource."""
    def count(value: Any) -> int:
        if isinstance(value, dict) and not _is_expression(value):
            return sum(1 + count(v) for v in value.values())
        if isinstance(value, list):
            return sum(count(v) for v in value)
        return 0
    out = []
    for symbol, item in data.get("resources", {}).items():
        config = item["config"]
        while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
            config = config["config"]
        if not item.get("existing"):
            body = {k: v for k, v in config.items() if k not in BICEP_KEYWORDS}
            out.append((symbol, f"{item['type']}@{item['api_version']}", count(body)))
    return out
