"""infra/ checked against the code (parsed with pycep-parser; no Bicep compiler or Azure here): storage and
identity are keyless, the roles cover what the code does and nothing broader, the Studio keys live only in Key
Vault, the site waits for its roles, Flex's limits and the hardening the issue asked for."""

from __future__ import annotations

import json
import re

import pytest

from shared.adapters.ledger import table_names
from tests.infra.bicep import (
    EXAMPLE_ENV,
    INFRA,
    ROOT,
    azd_parameters,
    bicep_files,
    body,
    deployed_app_settings,
    indexed_functions,
    main_scope,
    module_params,
    parsed,
    resources,
)

ROLES = {  # role definition id -> what the code needs it for
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "blob read/write/delete + user-delegation key",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "queue (the host's poison queue)",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "table (the ledger)",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault secrets read",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "Event Grid data send",
    "3913510d-42f4-4e42-8a64-420c390055eb": "telemetry with Entra auth",
}
TOO_BROAD = {"8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner", "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
             "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
             "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
             "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator"}
DATA_SCIENTIST = "f6c7c914-8db3-469d-8ca1-694a8461e59e"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    assert parsed(str(path.relative_to(INFRA)))


def test_every_setting_a_binding_names_is_always_set():
    """%NAME% in a trigger (the reconcile schedule) must be an app setting, or the host indexes nothing."""
    named = {m for fn in indexed_functions() for b in fn["bindings"] for v in b.values() if isinstance(v, str)
             for m in re.findall(r"%([^%]+)%", v)}
    assert named, "the reconcile timer names its schedule setting"
    assert named <= set(deployed_app_settings()), sorted(named - set(deployed_app_settings()))


def test_storage_is_identity_based_and_secrets_are_key_vault_references():
    deployed = deployed_app_settings({**EXAMPLE_ENV, "RETRAIN_BES_KEY": "k1", "RETRAIN_MANAGEMENT_KEY": "k2"})
    assert "AzureWebJobsStorage" not in deployed, "a connection string (with a key) must not be set"
    assert deployed["AzureWebJobsStorage__credential"] == "managedidentity"
    assert deployed["AzureWebJobsStorage__clientId"] == deployed["AZURE_CLIENT_ID"]
    for name in ("RETRAIN_BES_KEY", "RETRAIN_MANAGEMENT_KEY"):
        assert deployed[name].startswith("@Microsoft.KeyVault(SecretUri="), name
    assert "k1" not in json.dumps(deployed) and "k2" not in json.dumps(deployed)


def test_no_list_keys_account_key_or_keyed_connection_string_anywhere():
    for path in bicep_files():
        text = path.read_text()
        assert "listKeys" not in text and "listkeys" not in text.lower(), path
        assert "AccountKey=" not in text and "SharedAccessKey" not in text, path
    for name, output in parsed("main.bicep")["outputs"].items():
        assert not re.search(r"(?i)key|secret|password|connection", name) or name == "AZURE_KEY_VAULT_NAME", name
        assert "listKeys" not in json.dumps(output), name


def test_storage_account_is_keyless_and_creates_the_containers_tables_and_poison_queue_the_code_uses():
    (account,) = resources("app/storage.bicep", "Microsoft.Storage/storageAccounts").values()
    props = account["config"]["properties"]
    assert props["allowSharedKeyAccess"] is False and props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2" and props["supportsHttpsTrafficOnly"] is True
    containers = parsed("app/storage.bicep")["variables"]["appContainers"]["value"]
    triggers = {b["path"].split("/")[0] for fn in indexed_functions() for b in fn["bindings"]
                if b["type"] == "blobTrigger"}
    assert triggers <= {containers["data"], containers["models"]}, "the containers the triggers watch exist"
    deployed = deployed_app_settings()
    assert deployed["RETRAIN_DATA_CONTAINER"] == containers["data"]
    prefix = deployed["RETRAIN_TABLE_PREFIX"]
    declared = [t.replace("${tablePrefix}", prefix) for t in parsed("app/storage.bicep")["variables"]["ledgerTables"]
                ["value"]]
    assert declared == list(table_names(prefix))
    queues = resources("app/storage.bicep", "Microsoft.Storage/storageAccounts/queueServices/queues").values()
    assert sorted(q["config"]["name"] for q in queues) == ["retrain-work", "retrain-work-poison",
                                                           "webjobs-blobtrigger-poison",
                                                           "webjobs-blobtrigger-poison-poison"]


def _role_ids(relative: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in parsed(relative)["variables"]["roles"]["value"].items()}


def _role_id(relative: str, expr: dict) -> str:
    """The GUID of `subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.<name>)`."""
    call = expr["function"]
    assert call["type"] == "subscription_resource_id"
    assert call["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    accessor = call["parameters"]["resource_name_1"]["operator"]["operands"]
    assert accessor["operand_1"] == "roles"
    return _role_ids(relative)[accessor["operand_2"]]


def test_role_assignments_cover_what_the_code_does_and_nothing_broader():
    assigned: dict[str, set[str]] = {}
    for item in resources("app/rbac.bicep", "Microsoft.Authorization/roleAssignments").values():
        props = item["config"]["properties"]
        assigned.setdefault(props["principalId"], set()).add(_role_id("app/rbac.bicep", props["roleDefinitionId"]))
    missing = {why for role, why in ROLES.items() if role not in assigned["principalId"]}
    assert not missing, f"the app's identity lacks: {missing}"
    for principal, roles in assigned.items():
        broad = {TOO_BROAD[r] for r in roles if r in TOO_BROAD}
        assert not broad, f"{principal} gets {broad}"
    assert assigned["workspacePrincipalId"] == {"2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"}, "Blob Data Reader only"
    principal = module_params("rbac")["principalId"]["operator"]["operands"]
    assert principal["operand_1"] == "identity" and "principalId" in json.dumps(principal["operand_2"])


def test_the_deployers_role_takes_the_principal_type_azd_gives():
    """Signed in as a service principal (CI), a hard-coded 'User' makes ARM answer UnmatchedPrincipalType."""
    user = resources("app/rbac.bicep")["userBlobData"]["config"]["properties"]
    assert user["principalType"] == "userPrincipalType"
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert "AZURE_PRINCIPAL_TYPE" in given["principalType"]["value"]
    scope = main_scope({**EXAMPLE_ENV, "AZURE_PRINCIPAL_TYPE": "ServicePrincipal", "AZURE_PRINCIPAL_ID": "p"})
    assert scope.module_params("rbac")["userPrincipalType"] == "ServicePrincipal"
    for item in resources("app/rbac.bicep", "Microsoft.Authorization/roleAssignments").values():
        assert item["config"]["properties"]["principalType"] in ("ServicePrincipal", "userPrincipalType")


def test_the_site_is_written_after_its_roles_exist():
    """Key Vault references and identity-based host storage resolve only once the roles are assigned."""
    assert "rbac" in body(parsed("main.bicep")["modules"]["function"]).get("dependsOn", [])


def test_flex_consumption_plan_python_and_checked_scale_parameters():
    (plan,) = resources("app/function.bicep", "Microsoft.Web/serverfarms").values()
    assert plan["config"]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    (site,) = resources("app/function.bicep", "Microsoft.Web/sites").values()
    config = site["config"]["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["config"]["identity"]["type"] == "UserAssigned"
    assert "ftpsState" not in json.dumps(site["config"]), "deprecated on Flex Consumption"
    params = parsed("main.bicep")["parameters"]
    decorators = {d["type"]: d.get("argument") for d in params["maximumInstanceCount"]["decorators"]}
    assert params["maximumInstanceCount"]["type"] == "int" and decorators.get("min_value") == 1
    assert decorators.get("max_value") == 1000
    assert azd_parameters({**EXAMPLE_ENV, "RETRAIN_MAX_INSTANCES": "250"})["maximumInstanceCount"] == 250


def test_key_vault_purge_protection_is_an_option_never_written_false():
    (vault,) = resources("app/keyvault.bicep", "Microsoft.KeyVault/vaults").values()
    setting = vault["config"]["properties"]["enablePurgeProtection"]["operator"]
    assert setting["type"] == "conditional" and setting["operands"]["false_value"] is None, (
        "ARM refuses enablePurgeProtection: false; leave it out")
    assert azd_parameters({**EXAMPLE_ENV, "AZURE_KEY_VAULT_PURGE_PROTECTION": "true"})["keyVaultPurgeProtection"]


def test_endpoints_have_no_catch_all_default():
    """The code's default is no endpoint: a file dropped at the top of training-data/ must not retrain everyone."""
    assert "RETRAIN_ENDPOINTS" not in deployed_app_settings()
    assert json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["appSettings"]["value"][
        "RETRAIN_ENDPOINTS"] == "${RETRAIN_ENDPOINTS=}"


def test_event_grid_topics_key_vault_and_telemetry_sent_once():
    (system_topic,) = resources("app/events.bicep", "Microsoft.EventGrid/systemTopics").values()
    assert system_topic["config"]["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    (topic,) = resources("app/events.bicep", "Microsoft.EventGrid/topics").values()
    assert topic["config"]["properties"]["inputSchema"] == "CloudEventSchemaV1_0"
    assert topic["config"]["properties"]["disableLocalAuth"] is True
    (vault,) = resources("app/keyvault.bicep", "Microsoft.KeyVault/vaults").values()
    assert vault["config"]["properties"]["enableRbacAuthorization"] is True
    kv_params = parsed("app/keyvault.bicep")["parameters"]
    for secret in resources("app/keyvault.bicep", "Microsoft.KeyVault/vaults/secrets").values():
        source = secret["config"]["properties"]["value"]
        assert {"type": "secure"} in kv_params[source]["decorators"], f"{source} must be @secure()"
    (insights,) = resources("app/monitoring.bicep", "Microsoft.Insights/components").values()
    assert insights["config"]["properties"]["DisableLocalAuth"] is True
    host = json.loads((ROOT / "host.json").read_text())
    deployed = deployed_app_settings()
    assert host["telemetryMode"] == "OpenTelemetry" and deployed["PYTHON_ENABLE_OPENTELEMETRY"] == "true", (
        "the worker exports and tells the host, which then stops forwarding the same logs")
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in deployed, "a second exporter in the worker"


def test_azure_ml_workspace_role_topic_and_data_access():
    main = main_scope()
    params = main.module_params("azureml")
    assert params["workspaceName"] == "ws-ml" and params["role"] == "builtin"
    ml = body(parsed("main.bicep")["modules"]["azureml"])["scope"]["function"]
    assert ml["type"] == "resource_group", "deployed in the workspace's resource group"
    topic = resources("app/azureml.bicep", "Microsoft.EventGrid/systemTopics")["systemTopic"]["config"]
    assert topic["properties"]["topicType"] == "Microsoft.MachineLearningServices.Workspaces"
    assert parsed("app/azureml.bicep")["variables"]["dataScientist"]["value"] == DATA_SCIENTIST
    actions = parsed("app/azureml.bicep")["variables"]["customActions"]["value"]
    for needed in ("jobs/write", "jobs/read", "jobs/cancel/action", "models/write", "models/read",
                   "onlineEndpoints/read", "onlineEndpoints/write", "onlineEndpoints/score/action",
                   "onlineEndpoints/deployments/read", "onlineEndpoints/deployments/write",
                   "onlineEndpoints/deployments/delete", "onlineEndpoints/deployments/getLogs/action"):
        assert f"${{ml}}/{needed}" in actions, needed
    assert not any(a.endswith(("/*", "listKeys/action")) or "onlineEndpoints/delete" in a for a in actions), (
        "no wildcard, no key, never deletes an endpoint")
    assert main.module_params("rbac")["workspacePrincipalId"] == "<workspace.identity.principalId>"
    without = main_scope({k: v for k, v in EXAMPLE_ENV.items() if k != "AZURE_ML_WORKSPACE_ID"})
    assert without.module_params("rbac")["workspacePrincipalId"] == ""
    assert without.eval(parsed("main.bicep")["outputs"]["AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID"]["value"], {}) == ""


def test_main_parameters_file_gives_every_parameter_without_a_default():
    main_params = parsed("main.bicep")["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    required = {n for n, p in main_params.items() if p["default"] is None}
    assert required <= set(given), sorted(required - set(given))
    assert set(given) <= set(main_params), sorted(set(given) - set(main_params))
    for name in ("besKey", "managementKey"):
        assert {"type": "secure"} in main_params[name]["decorators"]
        assert given[name]["value"].startswith("${"), "secrets come from the azd environment, never the file"
