"""Scoring an Azure ML online endpoint: the request an MLflow tabular deployment takes (`input_data` with columns
and data), the credential its auth mode wants (an Entra token for AADToken endpoints, the endpoint's own short-lived
token for AMLToken, its key - asked for through ARM, never configured - for Key), optionally one named deployment
(`azureml-model-deployment`: how a deployment with no traffic is tested). Only the workspace's own scoring hosts
are called."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.credentials import TokenCredential

from shared.adapters.azureml.arm import Arm
from shared.adapters.azureml.errors import AzureMLError
from shared.adapters.transport import pooled_session, retry_after_seconds
from shared.logs import register_secret
from shared.ports.serving import Answers

SCORING_SUFFIX = ".inference.ml.azure.com"


class Scoring:
    def __init__(self, arm: Arm, credential: TokenCredential, timeout: float = 30) -> None:
        self.arm, self.credential, self.timeout = arm, credential, timeout
        self.session = pooled_session(16)

    def allowed(self, uri: str) -> bool:
        host = urlsplit(uri).netloc.lower()
        return host == self.arm.host or host.split(":")[0].endswith(SCORING_SUFFIX)

    def _bearer(self, endpoint: dict[str, Any]) -> str:
        name, mode = endpoint["name"], (endpoint.get("properties") or {}).get("authMode", "Key")
        if mode == "AADToken":
            token = self.credential.get_token(f"{self.arm.config.scoring_resource.rstrip('/')}/.default").token
        elif mode == "AMLToken":
            token = str(self.arm.json("POST", f"/onlineEndpoints/{name}/token", f"token of {name}")["accessToken"])
        else:
            token = str(self.arm.json("POST", f"/onlineEndpoints/{name}/listKeys", f"keys of {name}")["primaryKey"])
        register_secret(token)
        return token

    def score(self, endpoint: dict[str, Any], row: dict[str, str], deployment: str | None = None) -> Answers:
        """Score one row; AzureMLError when the endpoint (or deployment) does not answer with a prediction."""
        uri = str((endpoint.get("properties") or {}).get("scoringUri") or "")
        operation = f"score {endpoint.get('name')}" + (f" ({deployment})" if deployment else "")
        if not uri or not self.allowed(uri):
            raise AzureMLError(operation, None, "ScoringUriNotAllowed", f"the scoring URI {uri!r} is not one of the "
                               "workspace's scoring hosts")
        headers = {"Authorization": f"Bearer {self._bearer(endpoint)}", "Content-Type": "application/json"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        body = {"input_data": {"columns": list(row), "index": [0], "data": [list(row.values())]}}
        try:
            answer = self.session.post(uri, json=body, headers=headers, timeout=(5, self.timeout))
        except requests.RequestException as exc:
            raise AzureMLError(operation, None, "Unreachable", type(exc).__name__, unreachable=True) from None
        if answer.status_code != 200:
            reason = answer.headers.get("ms-azureml-model-error-reason") or answer.text[:300]
            raise AzureMLError(operation, answer.status_code, f"Scoring{answer.status_code}", reason,
                               retry_after=retry_after_seconds(answer.headers.get("Retry-After")),
                               input_refused=answer.status_code == 424)
        try:
            rows = answer.json()
        except ValueError:
            raise AzureMLError(operation, 200, "NotJson", "the answer is not JSON") from None
        if not isinstance(rows, list) or len(rows) != 1:
            raise AzureMLError(operation, 200, "NoPrediction", f"expected one prediction, got {str(rows)[:200]}")
        first = rows[0] if isinstance(rows[0], dict) else {"prediction": rows[0]}
        return [{str(k): str(v) for k, v in first.items()}]
