"""Azure Resource Manager calls to one Azure ML workspace, on azure-core's ARM pipeline (azure-mgmt-core): the
Entra bearer token for https://management.azure.com/, ARM's retry policy, and its long-running-operation poller
(`ARMPolling`: Azure-AsyncOperation, Location, Retry-After). Every wait is bounded; a 409 (the endpoint is busy
with another operation) is waited out within the same bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineContext, PipelineResponse
from azure.core.pipeline.policies import HeadersPolicy, RequestIdPolicy, RetryPolicy
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.core.polling.arm_polling import ARMPolling

from shared.adapters.azureml.errors import AzureMLError
from shared.adapters.transport import pooled_transport, retry_after_seconds
from shared.targets import AzureMLTarget

MANAGEMENT_SCOPE = "https://management.azure.com/.default"
KEEPALIVE_SECONDS = 5.0  # how often a waiting operation calls its keepalive (the caller's lease)
BUSY_PAUSE = 2.0  # seconds between tries while the endpoint is busy (ARM gives no Retry-After with the 409)


def failed(operation: str, response: Any, exc: Exception) -> AzureMLError:
    """A failed long-running operation as AzureMLError: the error its last answer carries (code, message)."""
    error: Any = None
    try:
        body = response.json() if response is not None else None
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        pass
    if isinstance(error, dict):
        return AzureMLError(operation, getattr(response, "status_code", None), str(error.get("code") or "Failed"),
                            str(error.get("message") or ""), input_refused=True)
    return AzureMLError(operation, getattr(response, "status_code", None), type(exc).__name__, str(exc),
                        input_refused=True)


class Arm:
    """The workspace's ARM routes, relative to its id (e.g. `/onlineEndpoints/a`)."""

    def __init__(self, config: AzureMLTarget, credential: TokenCredential, retries: int = 3,
                 read_timeout: float = 60) -> None:
        self.config = config
        self.host = urlsplit(config.arm_url).netloc.lower()
        policies = [RequestIdPolicy(), HeadersPolicy(), RetryPolicy(retry_total=retries, retry_backoff_max=30),
                    ARMChallengeAuthenticationPolicy(credential, MANAGEMENT_SCOPE)]
        self.client: ARMPipelineClient[HttpRequest, HttpResponse] = ARMPipelineClient(
            base_url=config.arm_url, policies=policies, transport=pooled_transport(16, 10, read_timeout))
        self.poll_interval = 5.0
        self.retry_after: float | None = None  # what the last operation started asked between looks

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.config.arm_url}{self.config.workspace_id}{path}"

    def send(self, method: str, path: str, operation: str, body: Any = None) -> HttpResponse:
        """One call; an answer of 400 and up raises AzureMLError (its ARM error code and message)."""
        request = HttpRequest(method, self.url(path), params={"api-version": self.config.api_version}, json=body)
        try:
            response = self.client.send_request(request)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise AzureMLError(operation, None, "Unreachable", type(exc).__name__, unreachable=True) from None
        except AzureError as exc:
            raise AzureMLError(operation, None, type(exc).__name__, str(exc)) from None
        if response.status_code >= 400:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            raise AzureMLError.from_answer(operation, response.status_code, answer,
                                           retry_after_seconds(response.headers.get("Retry-After")))
        return response

    def json(self, method: str, path: str, operation: str, body: Any = None) -> Any:
        response = self.send(method, path, operation, body)
        return response.json() if response.content else None

    def get(self, path: str, operation: str) -> Any:
        return self.json("GET", path, operation)

    def find(self, path: str, operation: str) -> Any:
        """GET, or None for 404."""
        try:
            return self.get(path, operation)
        except AzureMLError as exc:
            if exc.status == 404:
                return None
            raise

    def pages(self, path: str, operation: str) -> list[Any]:
        """Every item of a list route (following nextLink)."""
        items: list[Any] = []
        page = self.get(path, operation)
        while True:
            items += page.get("value") or []
            next_link = page.get("nextLink")
            if not next_link:
                return items
            page = self.client.send_request(HttpRequest("GET", next_link)).json()

    def operation(self, method: str, path: str, operation: str, body: Any, final_state: str,
                  deadline: float, keepalive: Callable[[], None] = lambda: None) -> Any:
        """A long-running operation to its end (ARM's poller), the endpoint's other operations waited out first;
        AzureMLError when it fails or outlasts `deadline` (time.monotonic())."""
        initial = self.start(method, path, operation, body, deadline, keepalive)
        return self.follow(initial, operation, final_state, deadline, keepalive)

    def start(self, method: str, path: str, operation: str, body: Any, deadline: float,
              keepalive: Callable[[], None] = lambda: None) -> HttpResponse:
        """Start a long-running operation and return its first answer without following it (the resource's own
        provisioningState says how it goes; its Azure-AsyncOperation header is where its error will be): the
        endpoint's other operations are waited out first, until `deadline` (time.monotonic())."""
        while True:
            try:
                answer = self.send(method, path, operation, body)
                self.retry_after = retry_after_seconds(answer.headers.get("Retry-After")) or self.retry_after
                return answer
            except AzureMLError as exc:
                if not exc.busy or time.monotonic() + BUSY_PAUSE > deadline:
                    raise
                time.sleep(BUSY_PAUSE)
                keepalive()

    def look_seconds(self) -> float:
        """How long to wait before looking at an operation started again: what the service asked (Retry-After),
        at most `poll_interval`."""
        return min(self.poll_interval, self.retry_after or self.poll_interval)

    def error_of(self, status_url: str, operation: str) -> AzureMLError | None:
        """The error a finished operation ended with (its Azure-AsyncOperation status resource), None when it did
        not fail or cannot be read now."""
        try:
            status = self.client.send_request(HttpRequest("GET", status_url)).json()
        except (AzureError, ValueError):
            return None
        error = (status or {}).get("error") if str((status or {}).get("status")) in ("Failed", "Canceled") else None
        if not isinstance(error, dict):
            return None
        return AzureMLError(operation, None, str(error.get("code") or "Failed"), str(error.get("message") or ""),
                            input_refused=True)

    def follow(self, initial: HttpResponse, operation: str, final_state: str, deadline: float,
               keepalive: Callable[[], None] = lambda: None) -> Any:
        """Poll an operation's first answer to its end with ARMPolling, calling `keepalive` every few seconds."""
        pipeline_response: PipelineResponse[HttpRequest, HttpResponse] = PipelineResponse(
            initial.request, initial, PipelineContext(None))

        def result(answer: PipelineResponse[HttpRequest, HttpResponse]) -> Any:
            text = answer.http_response.text()
            return answer.http_response.json() if text else None

        poller: LROPoller[Any] = LROPoller(self.client, pipeline_response, result, ARMPolling(
            self.poll_interval, lro_options={"final-state-via": final_state}))
        try:
            while True:
                poller.wait(timeout=max(0.0, min(KEEPALIVE_SECONDS, deadline - time.monotonic())))
                if poller.done():
                    return poller.result()
                if time.monotonic() >= deadline:
                    raise AzureMLError(operation, None, "OperationTimeout", "the operation did not end within "
                                       f"{self.config.deployment_timeout_minutes:g} minutes; it goes on, and is "
                                       "looked at again", transient=True)
                keepalive()
        except AzureError as exc:  # the operation failed: its status resource (or answer) holds ARM's error
            raise failed(operation, getattr(exc, "response", None), exc) from None
