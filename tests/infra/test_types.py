"""Every resource in infra/ type-checked against the Bicep compiler's published definitions (tests/infra/types/,
from Azure/bicep-types-az: see its README), and the checker shown to catch each kind of mistake on a planted copy
of a real template."""

from __future__ import annotations

import json

import pytest

from tests.infra.bicep import INFRA, bicep_files, parse_text, parsed
from tests.infra.typecheck import HERE, check_file, coverage, used_resource_types


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_resource_matches_the_published_type_definitions(path):
    relative = str(path.relative_to(INFRA))
    problems = check_file(parsed(relative), relative)
    assert not problems, "\n".join(map(str, problems))


def test_the_type_data_covers_every_resource_type_and_api_version_used_and_names_its_source():
    used = used_resource_types(parsed(str(p.relative_to(INFRA))) for p in bicep_files())
    sources = json.loads((HERE / "sources.json").read_text())
    kept = {name for subset in sources["subsets"].values() for name in subset["resources"]}
    assert {f"{t}@{v}" for t, v in used} <= kept, "run tests/infra/types/extract.py"
    assert len(sources["commit"]) == 40 and sources["repository"].endswith("Azure/bicep-types-az")
    checked = [c for p in bicep_files() for c in coverage(parsed(str(p.relative_to(INFRA))))]
    assert len(checked) >= 25 and sum(n for _, _, n in checked) >= 180


def planted(relative: str, old: str, new: str) -> list[str]:
    text = (INFRA / relative).read_text()
    assert text.count(old) >= 1, old
    return [str(p) for p in check_file(parse_text(text.replace(old, new, 1)), relative)]


@pytest.mark.parametrize(("relative", "old", "new", "expected"), [
    ("app/function.bicep", "httpsOnly: true", "httpsOnyl: true", "properties.httpsOnyl: unknown property"),
    ("app/storage.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAcess: false",
     "allowSharedKeyAcess: unknown property"),
    ("app/function.bicep", "httpsOnly: true", "httpsOnly: 'yes'", "httpsOnly: expected a boolean, got string"),
    ("app/keyvault.bicep", "sku: { family: 'A', name: 'standard' }", "sku: { family: 'A', name: 'gold' }",
     "'gold' is not one of"),
    ("app/storage.bicep", "properties: { publicAccess: 'None' }", "properties: { publicAccess: 'Everyone' }",
     "'Everyone' is not one of"),
    ("app/function.bicep", "  location: location\n  tags: union", "  tags: union", "location: missing required"),
    ("app/function.bicep", "httpsOnly: true", "httpsOnly: true\n    defaultHostName: 'x'",
     "defaultHostName: read-only property set"),
    ("app/function.bicep", "maximumInstanceCount: maximumInstanceCount", "maximumInstanceCount: 'many'",
     "maximumInstanceCount: expected an integer, got string"),
    ("app/rbac.bicep", "    principalId: principalId\n", "", "properties.principalId: missing required"),
    ("app/events.bicep", "inputSchema: 'CloudEventSchemaV1_0'", "inputSchema: 42", "matches none of the union"),
    ("app/function.bicep", "name: 'appsettings'", "name: 'appsetings'", "'appsetings' is not one of"),
])
def test_the_checker_catches_a_planted_mistake(relative, old, new, expected):
    assert not check_file(parsed(relative), relative), "the real template is clean"
    problems = planted(relative, old, new)
    assert any(expected in p for p in problems), problems


def test_the_postdeploy_hooks_subscription_bodies_match_the_published_type():
    """What scripts/postdeploy.py PUTs (not a template: a request body) checked the same way, at its api-version."""
    import sys

    from tests.infra.bicep import ROOT
    from tests.infra.typecheck import Checker, _type_files

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import postdeploy
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    types, body_ref = _type_files()[f"microsoft.eventgrid/systemtopics/eventsubscriptions@{postdeploy.EVENTGRID_API}"]
    env = {"AZURE_STORAGE_ACCOUNT_ID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/"
                                       "storageAccounts/st", "EVENTGRID_DEADLETTER_CONTAINER": "eventgrid-deadletter"}
    bodies = {"blob": postdeploy.blob_subscription(env, "app.azurewebsites.net", "model_landed",
                                                   "models/{name}.ilearner", "k+/="),
              "azureml": postdeploy.azureml_subscription("app.azurewebsites.net", "k+/=")}
    for label, sent in bodies.items():
        checker = Checker({}, f"postdeploy {label}")
        checker.check(types, body_ref, {"name": "blob-x", **sent}, "body")
        assert not checker.problems, "\n".join(map(str, checker.problems))
    planted = postdeploy.blob_subscription(env, "h", "f", "models/{name}", "k")
    planted["properties"]["filter"]["subjectBeginWith"] = planted["properties"]["filter"].pop("subjectBeginsWith")
    checker = Checker({}, "planted")
    checker.check(types, body_ref, {"name": "x", **planted}, "body")
    assert any("subjectBeginWith: unknown property" in str(p) for p in checker.problems), checker.problems
