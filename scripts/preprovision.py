"""azd preprovision hook: refuse, before anything is created, what would fail later or deploy wrong.

- the region has no Flex Consumption (`az functionapp list-flexconsumption-locations`; skipped with a warning when
  `az` cannot answer - ARM then refuses the plan itself);
- no target: neither RETRAIN_TARGETS nor RETRAIN_MANAGEMENT_URL;
- a JSON setting (RETRAIN_GATE, RETRAIN_TARGETS, RETRAIN_BES_GLOBAL_PARAMETERS, RETRAIN_SMOKE_ROW) that is not JSON of
  the right shape, or is set to an empty string (azd would stop on it with a less helpful message);
- a text setting holding a double quote or a backslash (azd substitutes it into main.parameters.json's JSON);
- a key inside RETRAIN_TARGETS (it would sit in the deployment's history and an app setting in clear: give the
  Studio keys as RETRAIN_BES_KEY / RETRAIN_MANAGEMENT_KEY, which go to Key Vault);
- an Azure ML target without AZURE_ML_WORKSPACE_ID, or naming another workspace (the app would get no role there);
- AZURE_ML_WORKSPACE_ID that is not a workspace's ARM id.

Reads the azd environment from the process environment (azd passes it to hooks). Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JSON_SETTINGS = {"RETRAIN_GATE": dict, "RETRAIN_TARGETS": list, "RETRAIN_BES_GLOBAL_PARAMETERS": dict,
                 "RETRAIN_SMOKE_ROW": dict}
SECRET_FIELDS = {"management_key", "bes_key", "key", "api_key"}
WORKSPACE_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                          r"Microsoft\.MachineLearningServices/workspaces/[^/]+$", re.IGNORECASE)


def text_settings() -> list[str]:
    """The settings main.parameters.json passes as text (its appSettings object)."""
    params = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    return sorted(params["appSettings"]["value"])


def problems(env: dict[str, str]) -> list[str]:
    out = []
    parsed: dict[str, object] = {}
    for name, kind in JSON_SETTINGS.items():
        if name not in env:
            continue
        try:
            value = json.loads(env[name])
        except json.JSONDecodeError as exc:
            out.append(f"{name} is not JSON ({exc.msg} at {exc.pos}); to unset it, delete its line from "
                       ".azure/<env>/.env")
            continue
        if not isinstance(value, kind):
            out.append(f"{name} must be a JSON {'object' if kind is dict else 'array'}")
            continue
        parsed[name] = value
    for name in text_settings():
        if any(c in env.get(name, "") for c in '"\\'):
            out.append(f"{name} holds a double quote or a backslash, which azd cannot pass through "
                       "main.parameters.json")
    targets = parsed.get("RETRAIN_TARGETS") or []
    if not targets and not env.get("RETRAIN_MANAGEMENT_URL"):
        out.append("no target: set RETRAIN_TARGETS (an Azure ML target, see docs/deploy.md) or the Studio (classic) "
                   "RETRAIN_MANAGEMENT_URL + RETRAIN_MANAGEMENT_KEY + RETRAIN_RESOURCE_NAME")
    workspace = env.get("AZURE_ML_WORKSPACE_ID", "")
    if workspace and not WORKSPACE_ID.match(workspace):
        out.append("AZURE_ML_WORKSPACE_ID must be a workspace's ARM id: /subscriptions/<sub>/resourceGroups/<rg>/"
                   "providers/Microsoft.MachineLearningServices/workspaces/<name>")
    for target in targets if isinstance(targets, list) else []:
        if not isinstance(target, dict):
            out.append("RETRAIN_TARGETS: each target is a JSON object")
            continue
        name = target.get("name", "?")
        secrets = sorted(SECRET_FIELDS & set(target))
        if secrets:
            out.append(f"RETRAIN_TARGETS target '{name}' holds {secrets}: keys go in RETRAIN_BES_KEY / "
                       "RETRAIN_MANAGEMENT_KEY (Key Vault), never in a plain setting")
        if target.get("kind") == "azureml":
            nested = target.get("azureml")
            spec = nested if isinstance(nested, dict) else target
            target_ws = str(spec.get("workspace_id", ""))
            if not workspace:
                out.append(f"target '{name}' is an Azure ML target: set AZURE_ML_WORKSPACE_ID to its workspace so "
                           "the app gets its role there and the workspace's events reach the app")
            elif target_ws.lower() != workspace.lower():
                out.append(f"target '{name}' names workspace {target_ws!r}, not AZURE_ML_WORKSPACE_ID ({workspace})")
    return out


def flex_region_problem(location: str) -> str | None:
    exe = shutil.which("az")
    if not location or exe is None:
        print("preprovision: cannot check the region (no AZURE_LOCATION yet, or no az); ARM will", flush=True)
        return None
    done = subprocess.run([exe, "functionapp", "list-flexconsumption-locations", "--query", "[].name",
                           "--output", "json"], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"preprovision: could not list Flex Consumption regions ({done.stderr.strip()[:200]}); ARM will check",
              flush=True)
        return None
    regions = {str(r).replace(" ", "").lower() for r in json.loads(done.stdout or "[]")}
    if location.replace(" ", "").lower() not in regions:
        return (f"{location} has no Flex Consumption plan; pick one of: {', '.join(sorted(regions))} "
                "(azd env set AZURE_LOCATION <region>)")
    return None


def main() -> int:
    env = dict(os.environ)
    found = problems(env)
    region = flex_region_problem(env.get("AZURE_LOCATION", ""))
    if region:
        found.append(region)
    for problem in found:
        print(f"preprovision: {problem}", file=sys.stderr, flush=True)
    if found:
        print("preprovision: nothing was created; fix the above with `azd env set` and run azd again",
              file=sys.stderr, flush=True)
        return 1
    print("preprovision: settings and region checked", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
