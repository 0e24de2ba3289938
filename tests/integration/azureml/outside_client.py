"""An outside ARM client for Azure Machine Learning online endpoints, written only from the REST reference
(docs/reference/azureml-rest.md; mfe.json 2024-10-01) with azure-core's ARM pipeline and its long-running-operation
poller, as a generated management SDK does it. It imports nothing of the stand-in and runs unchanged against
`https://management.azure.com` (base URL) with any TokenCredential."""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import HeadersPolicy, NetworkTraceLoggingPolicy, RequestIdPolicy, RetryPolicy
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMAutoResourceProviderRegistrationPolicy, ARMChallengeAuthenticationPolicy
from azure.mgmt.core.polling.arm_polling import ARMPolling

SCOPE = "https://management.azure.com/.default"


class OnlineEndpoints:
    def __init__(self, base_url: str, workspace_id: str, api_version: str, credential: TokenCredential,
                 **transport: Any) -> None:
        policies = [RequestIdPolicy(), HeadersPolicy(), RetryPolicy(retry_total=3),
                    ARMAutoResourceProviderRegistrationPolicy(), ARMChallengeAuthenticationPolicy(credential, SCOPE),
                    NetworkTraceLoggingPolicy()]
        self._client: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(base_url=base_url, policies=policies,
                                                                             **transport)
        self.workspace_id = workspace_id
        self.api_version = api_version

    def _request(self, method: str, path: str, body: Any = None) -> PipelineResponse:  # type: ignore[type-arg]
        request = HttpRequest(method, self._client.format_url(self.workspace_id + path),
                              params={"api-version": self.api_version}, json=body)
        response = self._client._pipeline.run(request)  # as generated management SDKs call it
        if response.http_response.status_code >= 400:
            raise HttpResponseError(response=response.http_response)
        return response

    def _lro(self, method: str, path: str, body: Any, final_state: str) -> LROPoller[Any]:
        initial = self._request(method, path, body)

        def result(pipeline_response: PipelineResponse) -> Any:  # type: ignore[type-arg]
            text = pipeline_response.http_response.text()
            return pipeline_response.http_response.json() if text else None

        return LROPoller(self._client, initial, result, ARMPolling(lro_options={"final-state-via": final_state}))

    # -- the operations
    def get(self, path: str) -> dict[str, Any]:
        return dict(self._request("GET", path).http_response.json())

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        return dict(self._request("POST", path, body).http_response.json())

    def register_model(self, name: str, version: str, model_uri: str) -> dict[str, Any]:
        body = {"properties": {"modelUri": model_uri, "modelType": "CustomModel"}}
        return dict(self._request("PUT", f"/models/{name}/versions/{version}", body).http_response.json())

    def begin_create_endpoint(self, name: str, location: str, traffic: dict[str, int] | None = None,
                              auth_mode: str = "Key") -> LROPoller[Any]:
        body = {"location": location, "properties": {"authMode": auth_mode, "traffic": traffic or {}}}
        return self._lro("PUT", f"/onlineEndpoints/{name}", body, "original-uri")

    def begin_create_deployment(self, endpoint: str, name: str, location: str, model_id: str,
                                instance_count: int = 1) -> LROPoller[Any]:
        body = {"location": location, "sku": {"name": "Default", "capacity": instance_count},
                "properties": {"endpointComputeType": "Managed", "model": model_id,
                               "instanceType": "Standard_DS3_v2"}}
        return self._lro("PUT", f"/onlineEndpoints/{endpoint}/deployments/{name}", body, "original-uri")

    def begin_delete_deployment(self, endpoint: str, name: str) -> LROPoller[Any]:
        return self._lro("DELETE", f"/onlineEndpoints/{endpoint}/deployments/{name}", None, "location")

    def list_keys(self, endpoint: str) -> dict[str, Any]:
        return self.post(f"/onlineEndpoints/{endpoint}/listKeys")
