"""What a client of the (emulated) Studio sees: an endpoint's details through the management API with the workspace
token, and scores through its request-response API with the endpoint's own key. Used by the demo, the
`python -m tools.localdev score` helper and the end-to-end tests."""

from __future__ import annotations

from typing import Any

import requests


class StudioCallFailed(Exception):
    pass


def get_endpoint(manifest: dict[str, Any], name: str, http: Any = requests) -> dict[str, Any]:
    url = (f"{manifest['management_url']}/workspaces/{manifest['workspace_id']}/webservices/"
           f"{manifest['predictive_service']['id']}/endpoints/{name}")
    resp = http.get(url, headers={"Authorization": f"Bearer {manifest['workspace_token']}"}, timeout=30)
    if resp.status_code != 200:
        raise StudioCallFailed(f"endpoint {name}: HTTP {resp.status_code} {resp.text[:200]}")
    return dict(resp.json())


def serving(endpoint: dict[str, Any]) -> str:
    """The RelativeLocation of the model the endpoint serves."""
    resources = endpoint.get("Resources") or []
    return str(resources[0]["Location"]["RelativeLocation"]) if resources else "?"


def score(endpoint: dict[str, Any], rows: list[dict[str, Any]], http: Any = requests) -> list[float]:
    """P(positive class) for each row, scored through the endpoint (classic table format)."""
    names = list(rows[0])
    body = {"Inputs": {"input1": {"ColumnNames": names, "Values": [[str(r[n]) for n in names] for r in rows]}},
            "GlobalParameters": {}}
    resp = http.post(f"{endpoint['ApiLocation']}/execute", params={"api-version": "2.0", "details": "true"},
                     headers={"Authorization": f"Bearer {endpoint['PrimaryKey']}"}, json=body, timeout=30)
    if resp.status_code != 200:
        raise StudioCallFailed(f"scoring through {endpoint.get('Name')}: HTTP {resp.status_code} {resp.text[:300]}")
    value = resp.json()["Results"]["output1"]["value"]
    column = value["ColumnNames"].index("Scored Probabilities")
    return [float(row[column]) for row in value["Values"]]
