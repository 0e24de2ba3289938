"""Every setting the code reads can be set through azd, from one place (main.parameters.json), or is on the
allow-list below with the reason infra/ does not set it. "What the code reads" comes from the code: the aliases of
shared/settings.py's Settings model, every `os.environ` read in shipped modules, and every %SETTING% a binding names.
"Can be set" is shown by deploying, through the same evaluation azd and ARM do (main.parameters.json with an azd
environment -> main.bicep -> app/function.bicep's app settings), an environment that gives every azd value."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError, load_settings
from tests.infra.bicep import (
    EXAMPLE_ENV,
    INFRA,
    ROOT,
    Placeholder,
    app_settings_for_code,
    azd_parameters,
    deployed_app_settings,
    indexed_functions,
    parsed,
)

SHIPPED = [ROOT / "function_app.py", *sorted((ROOT / "blueprints").rglob("*.py")),
           *sorted((ROOT / "shared").rglob("*.py"))]
# Read by the code, deliberately not set by infra/ - each with the reason.
NOT_SET_BY_INFRA = {
    "AzureWebJobsStorage": "a connection string carries the account key and the account has shared keys off; infra "
                           "sets the identity-based AzureWebJobsStorage__* settings instead",
    "RETRAIN_EVENTGRID_KEY": "the Retrain.* topic has local (key) auth disabled: the app sends with its identity",
    "RETRAIN_FAILPOINT": "test-only fault injection (the crash tests); must never be set in Azure",
    "REQUESTS_CA_BUNDLE": "a machine's own CA bundle (a TLS-inspecting proxy); a Flex app reaches Azure directly",
    "HTTPS_PROXY": "a machine's outbound proxy; a Flex app reaches Azure directly (VNet egress is configured on the "
                   "plan, not through this setting)",
    "HTTP_PROXY": "as HTTPS_PROXY",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "must stay unset: the worker would configure a second exporter "
                                                   "(shared/telemetry.py; PYTHON_ENABLE_OPENTELEMETRY is set instead)",
}
# Set by the platform, not by the app's settings; on Flex Consumption several are refused as app settings.
PLATFORM = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex: from functionAppConfig.runtime (python 3.11); refused as an app setting",
    "FUNCTIONS_EXTENSION_VERSION": "Flex: the platform's; refused as an app setting",
    "WEBSITE_RUN_FROM_PACKAGE": "Flex: functionAppConfig.deployment.storage instead",
    "WEBSITE_CONTENTSHARE": "Flex has no content share",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "Flex has no content share",
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "Flex: remote build is azd's deployment option",
    "ENABLE_ORYX_BUILD": "as SCM_DO_BUILD_DURING_DEPLOYMENT",
    "FUNCTIONS_WORKER_PROCESS_COUNT": "Flex: per-instance concurrency is the plan's",
    "WEBSITE_SITE_NAME": "set by the platform in every instance",
    "WEBSITE_AUTH_ENABLED": "set by App Service when App Service Authentication is on (authsettingsV2, "
                            "infra/app/function.bicep): the app then trusts the X-MS-CLIENT-PRINCIPAL it sets",
}


def _environ_aliases(tree: ast.AST) -> set[str]:
    """Names bound to os.environ (e.g. `env = os.environ if environ is None else environ`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and "os.environ" in ast.unparse(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def environ_reads(paths: list[Path]) -> dict[str, str]:
    """{setting: "file:line"} for os.environ.get("X"), os.environ["X"], os.getenv("X") and <alias>.get("X")."""
    found: dict[str, str] = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        aliases = {"os.environ"} | _environ_aliases(tree)
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                first = node.args[0]
                target = ast.unparse(node.func.value)
                if (node.func.attr == "get" and target in aliases) or ast.unparse(node.func) == "os.getenv":
                    name = first.value if isinstance(first, ast.Constant) else None
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in aliases:
                name = node.slice.value if isinstance(node.slice, ast.Constant) else None
            if isinstance(name, str):
                found.setdefault(name, f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
    return found


def settings_the_code_reads() -> dict[str, str]:
    reads = {str(f.validation_alias): "shared/settings.py (Settings)" for f in Settings.model_fields.values()}
    for name, where in environ_reads(SHIPPED).items():
        reads.setdefault(name, where)
    for fn in indexed_functions():
        for binding in fn["bindings"]:
            for value in binding.values():
                for name in re.findall(r"%([^%]+)%", value) if isinstance(value, str) else []:
                    reads.setdefault(name, f"the {fn['name']} binding")
    return reads


def azd_variables() -> set[str]:
    """Every azd environment value main.parameters.json reads."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", (INFRA / "main.parameters.json").read_text()))


def full_environment() -> dict[str, str]:
    """An azd environment giving every value main.parameters.json reads, each recognisable in the result."""
    declared = parsed("main.bicep")["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    env = dict(EXAMPLE_ENV)
    for name, entry in given.items():
        if isinstance(entry["value"], str):
            (variable,) = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", entry["value"])
            kind = declared[name]["type"]
            if variable in env:
                continue
            env[variable] = {"object": json.dumps({"from": variable}), "array": json.dumps([{"from": variable}]),
                             "int": "100", "bool": "false"}.get(kind, f"value-of-{variable}")
        else:
            for variable in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", json.dumps(entry)):
                env[variable] = f"value-of-{variable}"
    env["AZURE_ML_ROLE"] = "custom"
    env["AZURE_PRINCIPAL_TYPE"] = "ServicePrincipal"
    return env


def unsettable(reads: dict[str, str], deployed: set[str]) -> list[str]:
    """Settings the code reads that infra/ cannot set and the allow-lists do not excuse, with where they are read."""
    return sorted(f"{name} (read at {where})" for name, where in reads.items()
                  if name not in deployed and name not in NOT_SET_BY_INFRA and name not in PLATFORM)


def test_the_scan_finds_the_codes_environment_reads():
    reads = environ_reads(SHIPPED)
    assert {"APPLICATIONINSIGHTS_CONNECTION_STRING", "RETRAIN_FAILPOINT", "REQUESTS_CA_BUNDLE"} <= set(reads), reads


def test_every_setting_the_code_reads_can_be_set_through_azd():
    deployed = set(deployed_app_settings(full_environment()))
    missing = unsettable(settings_the_code_reads(), deployed)
    assert not missing, f"read by the code, but infra/ cannot set them (add each to main.parameters.json): {missing}"


def test_a_setting_added_to_the_code_fails_until_infra_gets_it():
    """The same check, on the code's settings plus one planted the way the lead would add one."""
    reads = {**settings_the_code_reads(), "RETRAIN_PLANTED_SETTING": "shared/settings.py (Settings)"}
    assert unsettable(reads, set(deployed_app_settings(full_environment()))) == [
        "RETRAIN_PLANTED_SETTING (read at shared/settings.py (Settings))"]
    planted = ast.parse("import os\ndef f(environ=None):\n    env = os.environ if environ is None else environ\n"
                        "    return env.get('RETRAIN_ANOTHER_ONE')\n")
    path = ROOT / "tests" / "infra" / "planted_module_for_test.py"
    try:
        path.write_text(ast.unparse(planted))
        assert "RETRAIN_ANOTHER_ONE" in environ_reads([path])
    finally:
        path.unlink()


def test_each_azd_value_reaches_its_app_setting_unchanged():
    env = full_environment()
    deployed = deployed_app_settings(env)
    text = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["appSettings"]["value"]
    for name in text:
        assert deployed[name] == f"value-of-{name}", name
    assert json.loads(deployed["RETRAIN_GATE"]) == {"from": "RETRAIN_GATE"}
    assert json.loads(deployed["RETRAIN_TARGETS"]) == json.loads(env["RETRAIN_TARGETS"])
    assert json.loads(deployed["RETRAIN_SMOKE_ROW"]) == {"from": "RETRAIN_SMOKE_ROW"}
    assert json.loads(deployed["RETRAIN_BES_GLOBAL_PARAMETERS"]) == {"from": "RETRAIN_BES_GLOBAL_PARAMETERS"}
    for secret in ("RETRAIN_BES_KEY", "RETRAIN_MANAGEMENT_KEY"):
        assert re.fullmatch(r"@Microsoft\.KeyVault\(SecretUri=<\w+\.properties\.secretUri>\)", deployed[secret])
        assert "value-of" not in deployed[secret], "a key never becomes an app setting's value"


def test_an_unset_value_is_left_out_so_the_codes_default_applies():
    deployed = deployed_app_settings()  # Azure ML target only: no Studio value, no gate, no schema given
    for name in ("RETRAIN_GATE_METRIC", "RETRAIN_REQUIRED_COLUMNS", "RETRAIN_ENDPOINTS", "RETRAIN_GATE",
                 "RETRAIN_BES_KEY", "RETRAIN_MANAGEMENT_URL"):
        assert name not in deployed, name
    assert deployed["RETRAIN_RECONCILE_SCHEDULE"] == Settings.model_fields["reconcile_schedule"].default, (
        "the binding needs the setting: infra writes the code's default when none is given")


def test_the_team_cannot_override_what_infra_wires():
    env = {**EXAMPLE_ENV, "RETRAIN_DATA_CONTAINER": "elsewhere", "AZURE_CLIENT_ID": "someone"}
    deployed = deployed_app_settings(env)
    assert deployed["RETRAIN_DATA_CONTAINER"] == "training-data"
    text = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["appSettings"]["value"]
    wired = {"RETRAIN_DATA_CONTAINER", "RETRAIN_MODELS_CONTAINER", "RETRAIN_REJECTED_CONTAINER",
             "RETRAIN_TABLE_PREFIX", "RETRAIN_EVENTGRID_ENDPOINT", "AZURE_CLIENT_ID"}
    assert not wired & set(text), "a team value of these would be silently ignored"


def test_json_settings_are_object_or_array_parameters_so_azd_parses_them():
    """A JSON value substituted into a string parameter's JSON text breaks main.parameters.json (its quotes)."""
    json_fields = {str(f.validation_alias) for f in Settings.model_fields.values()
                   if re.search(r"\b(dict|list\[Target\])", str(f.annotation))}
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = parsed("main.bicep")["parameters"]
    by_variable = {entry["value"][2:].split("=")[0].rstrip("}"): name for name, entry in given.items()
                   if isinstance(entry["value"], str)}
    for field in json_fields:
        assert field in by_variable, f"{field} must be its own object/array parameter"
        assert declared[by_variable[field]]["type"] in ("object", "array"), field
    params = azd_parameters({**EXAMPLE_ENV, "RETRAIN_GATE": '{"AUC": {"min": 0.7}}'})
    assert params["retrainGate"] == {"AUC": {"min": 0.7}}


def test_the_deployed_settings_load_through_the_code_and_none_is_a_flex_refused_one():
    settings = load_settings(app_settings_for_code())
    assert settings.storage_connection_string is None and settings.eventgrid_key is None
    assert [t.kind for t in settings.targets] == ["azureml"]
    deployed = deployed_app_settings(full_environment())
    assert not set(deployed) & set(PLATFORM), "Flex Consumption refuses these as app settings"
    assert not set(deployed) & set(NOT_SET_BY_INFRA)
    assert not any(isinstance(v, Placeholder) and "listKeys" in v for v in deployed.values())


def test_an_unresolved_key_vault_reference_is_refused_naming_the_setting():
    env = {**app_settings_for_code(), "RETRAIN_BES_KEY": "@Microsoft.KeyVault(SecretUri=https://kv/secrets/bes/)"}
    with pytest.raises(SettingsError, match=r"RETRAIN_BES_KEY: an unresolved Key Vault reference"):
        load_settings(env)


def test_every_setting_is_documented_in_the_deploy_guide():
    text = (ROOT / "docs" / "deploy.md").read_text()
    absent = sorted(n for n in {*settings_the_code_reads(), *azd_variables()} if f"`{n}`" not in text
                    and n not in PLATFORM)
    assert not absent, f"docs/deploy.md does not name: {absent}"
