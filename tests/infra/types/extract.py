"""Refresh the type definitions under tests/infra/types/ from a clone of Azure/bicep-types-az (run by hand).

    .venv/bin/python -m tests.infra.types.extract --git-dir <bicep-types-az>/.git [--commit <sha>]

For every resource type and api-version infra/ uses, it reads `generated/<provider>/<namespace>/<api-version>/
types.json` at the commit, keeps only the types reachable from those resources (the files are large), renumbers the
references and writes `<namespace>/<api-version>/types.json` here, then rewrites sources.json (each subset's source
path and the commit). README.md says how the checker uses them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from typing import Any

from tests.infra.bicep import INFRA, bicep_files, parsed
from tests.infra.typecheck import HERE, used_resource_types

# Not in a template: what scripts/postdeploy.py PUTs through ARM (its request bodies are checked too).
HOOK_RESOURCES = {("Microsoft.EventGrid/systemTopics/eventSubscriptions", "2025-02-15")}


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, text=True, check=True).stdout


def _refs(node: Any) -> list[int]:
    found = []
    if isinstance(node, dict):
        if set(node) == {"$ref"} and isinstance(node["$ref"], str) and node["$ref"].startswith("#/"):
            return [int(node["$ref"][2:])]
        for value in node.values():
            found += _refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _refs(value)
    return found


def _renumber(node: Any, mapping: dict[int, int]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$ref"} and isinstance(node["$ref"], str) and node["$ref"].startswith("#/"):
            return {"$ref": f"#/{mapping[int(node['$ref'][2:])]}"}
        return {k: _renumber(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [_renumber(v, mapping) for v in node]
    return node


def subset(types: list[dict[str, Any]], names: set[str]) -> list[dict[str, Any]]:
    """The ResourceType entries named (`Type@version`) and every type they reach, renumbered from 0."""
    roots = [i for i, t in enumerate(types) if t.get("$type") == "ResourceType" and t["name"] in names]
    missing = names - {types[i]["name"] for i in roots}
    if missing:
        raise SystemExit(f"not in this types.json: {sorted(missing)}")
    keep, todo = set(), list(roots)
    while todo:
        index = todo.pop()
        if index in keep:
            continue
        keep.add(index)
        todo += _refs(types[index])
    mapping = {old: new for new, old in enumerate(sorted(keep))}
    return [_renumber(types[old], mapping) for old in sorted(keep)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--git-dir", required=True)
    parser.add_argument("--commit", default="HEAD")
    args = parser.parse_args()
    commit = _git(args.git_dir, "rev-parse", args.commit).strip()
    listing = _git(args.git_dir, "ls-tree", "-r", "--name-only", commit, "generated/").splitlines()
    wanted: dict[tuple[str, str], set[str]] = {}
    used = used_resource_types([parsed(str(p.relative_to(INFRA))) for p in bicep_files()]) | HOOK_RESOURCES
    for type_name, version in sorted(used):
        wanted.setdefault((type_name.split("/")[0].lower(), version), set()).add(f"{type_name}@{version}")
    sources = {}
    for (namespace, version), names in sorted(wanted.items()):
        candidates = [p for p in listing if p.endswith(f"/{namespace}/{version}/types.json")]
        for path in candidates:
            types = json.loads(_git(args.git_dir, "show", f"{commit}:{path}"))
            have = {t["name"] for t in types if t.get("$type") == "ResourceType"}
            if names <= have:
                break
        else:
            raise SystemExit(f"no types.json under generated/ defines {sorted(names)}")
        out = HERE / namespace / version / "types.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(subset(types, names), indent=1, sort_keys=True) + "\n")
        sources[f"{namespace}/{version}"] = {"source": path, "resources": sorted(names)}
        print(f"{path}: {len(names)} resource type(s) -> {out.relative_to(HERE)}")
    (HERE / "sources.json").write_text(json.dumps({"repository": "https://github.com/Azure/bicep-types-az",
                                                   "commit": commit, "subsets": sources}, indent=1) + "\n")


if __name__ == "__main__":
    main()
