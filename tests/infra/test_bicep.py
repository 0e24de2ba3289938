"""infra/ checked against the code (parsed with pycep-parser; no Bicep compiler or Azure here): the function app
gets every setting shared/settings.py needs and every %setting% its bindings name, storage and identity are
keyless, the roles cover what the code does and nothing broader, the Studio keys live only in Key Vault."""

from __future__ import annotations

import json
import re

import pytest

from shared.adapters.ledger import table_names
from shared.settings import Settings, load_settings
from tests.infra.bicep import (
    INFRA,
    app_settings,
    bicep_files,
    evaluated_app_settings,
    indexed_functions,
    module_params,
    parsed,
    resources,
    setting_value,
)

KV_REF = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=[^)]+\)$")
# Settings the platform or the SDKs read (not shared/settings.py): identity, host storage, telemetry.
PLATFORM_SETTINGS = {"AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__credential", "AZURE_CLIENT_ID",
                     "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
ROLES = {  # role definition id -> what the code needs it for
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "blob read/write/delete + user-delegation key",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "queue (the host's poison queue)",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "table (the ledger)",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault secrets read",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "Event Grid data send",
}
TOO_BROAD = {"8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner", "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
             "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
             "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
             "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator"}


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    assert parsed(str(path.relative_to(INFRA)))


def test_the_app_settings_satisfy_the_codes_settings_model():
    """The settings as the template sets them load through shared/settings.py: every required setting is there
    (drop one from function.bicep, or make the code require a new one, and this fails)."""
    environ = evaluated_app_settings()
    settings = load_settings(environ)
    assert settings.storage_connection_string is None and settings.eventgrid_key is None
    assert settings.storage_account_name and settings.storage_table_uri and settings.storage_blob_uri
    assert settings.eventgrid_endpoint, "events go to the custom topic"


def test_every_setting_in_the_template_is_one_the_code_or_the_platform_reads():
    known = {str(f.validation_alias) for f in Settings.model_fields.values()} | PLATFORM_SETTINGS
    binding_settings = {m for fn in indexed_functions() for b in fn["bindings"] for v in b.values()
                        if isinstance(v, str) for m in re.findall(r"%([^%]+)%", v)}
    unknown = set(app_settings()) - known - binding_settings
    assert not unknown, f"settings no code reads (a typo?): {sorted(unknown)}"


def test_every_setting_a_binding_names_is_set():
    """%NAME% in a trigger (the reconcile schedule) must be an app setting, or the host indexes nothing."""
    named = {m for fn in indexed_functions() for b in fn["bindings"] for v in b.values() if isinstance(v, str)
             for m in re.findall(r"%([^%]+)%", v)}
    assert named, "the reconcile timer names its schedule setting"
    assert named <= set(app_settings()), sorted(named - set(app_settings()))


def test_storage_is_identity_based_and_secrets_are_key_vault_references():
    settings = app_settings()
    values = evaluated_app_settings()
    assert "AzureWebJobsStorage" not in settings, "a connection string (with a key) must not be set"
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == settings["AZURE_CLIENT_ID"] == "identityClientId"
    secret_aliases = {str(f.validation_alias) for f in Settings.model_fields.values()
                      if "SecretStr" in str(f.annotation)}
    for name in secret_aliases & set(settings):
        assert KV_REF.match(values[name]), f"{name} must be a Key Vault reference, not {settings[name]!r}"
    assert {"RETRAIN_BES_KEY", "RETRAIN_MANAGEMENT_KEY"} <= set(settings)
    assert "RETRAIN_EVENTGRID_KEY" not in settings and "RETRAIN_TARGETS" not in settings


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
    storage = parsed("app/storage.bicep")
    variables = storage["variables"]
    defaults = load_settings(evaluated_app_settings())
    assert set(variables["appContainers"]["value"]) == {defaults.data_container, defaults.models_container,
                                                        defaults.rejected_container}
    prefix = setting_value("function", app_settings()["RETRAIN_TABLE_PREFIX"])
    declared = [t.replace("${tablePrefix}", prefix) for t in variables["ledgerTables"]["value"]]
    assert declared == list(table_names(prefix))
    assert module_params("storage")["tablePrefix"] == module_params("function")["tablePrefix"]
    (queue,) = resources("app/storage.bicep", "Microsoft.Storage/storageAccounts/queueServices/queues").values()
    assert queue["config"]["name"] == "webjobs-blobtrigger-poison"


def _role_id(expr: dict) -> str:
    """The GUID of `subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.<name>)`."""
    call = expr["function"]
    assert call["type"] == "subscription_resource_id"
    assert call["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    accessor = call["parameters"]["resource_name_1"]["operator"]["operands"]
    assert accessor["operand_1"] == "roles"
    return str(parsed("app/rbac.bicep")["variables"]["roles"]["value"][accessor["operand_2"]])


def test_role_assignments_cover_what_the_code_does_and_nothing_broader():
    assigned: dict[str, set[str]] = {}
    for item in resources("app/rbac.bicep", "Microsoft.Authorization/roleAssignments").values():
        props = item["config"]["properties"]
        role = _role_id(props["roleDefinitionId"])
        assigned.setdefault(props["principalId"], set()).add(role)
    app_roles = assigned["principalId"]  # the function app's managed identity
    missing = {why for role, why in ROLES.items() if role not in app_roles}
    assert not missing, f"the app's identity lacks: {missing}"
    for principal, roles in assigned.items():
        broad = {TOO_BROAD[r] for r in roles if r in TOO_BROAD}
        assert not broad, f"{principal} gets {broad}"
    principal = module_params("rbac")["principalId"]["operator"]["operands"]
    assert principal["operand_1"] == "identity" and "principalId" in json.dumps(principal["operand_2"])


def test_flex_consumption_plan_python_and_scale_parameters():
    (plan,) = resources("app/function.bicep", "Microsoft.Web/serverfarms").values()
    assert plan["config"]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    (site,) = resources("app/function.bicep", "Microsoft.Web/sites").values()
    config = site["config"]["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"] == {"maximumInstanceCount": "maximumInstanceCount",
                                             "instanceMemoryMB": "instanceMemoryMB"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["config"]["identity"]["type"] == "UserAssigned"
    assert site["config"]["properties"]["keyVaultReferenceIdentity"] == "identityId"
    main_params = parsed("main.bicep")["parameters"]
    assert {"maximumInstanceCount", "instanceMemoryMB"} <= set(main_params)


def test_event_grid_topics_and_key_vault():
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


def test_main_parameters_file_gives_every_parameter_without_a_default():
    main_params = parsed("main.bicep")["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    required = {n for n, p in main_params.items() if p["default"] is None}
    assert required <= set(given), sorted(required - set(given))
    assert set(given) <= set(main_params), sorted(set(given) - set(main_params))
    for name in ("besKey", "managementKey"):
        assert {"type": "secure"} in main_params[name]["decorators"]
        assert given[name]["value"].startswith("${"), "secrets come from the azd environment, never the file"
