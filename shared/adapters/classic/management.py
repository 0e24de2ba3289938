"""The web-service management API client: endpoints of one (predictive) web service."""

from __future__ import annotations

import json
from urllib.parse import quote

from shared.adapters.classic.errors import StudioApiError
from shared.adapters.classic.http import StudioHttp
from shared.adapters.classic.models import Endpoint, ResourceLocation, WebService


class ManagementClient:
    """`service_url` = `https://management.azureml.net/workspaces/<ws>/webservices/<service id>`."""

    def __init__(self, http: StudioHttp, service_url: str, key: str) -> None:
        self.http = http
        self.service_url = service_url.rstrip("/")
        self._key = key

    def _ep(self, name: str) -> str:
        return f"{self.service_url}/endpoints/{quote(name, safe='')}"

    def get_service(self, max_attempts: int | None = None, read_timeout: float | None = None) -> WebService:
        resp = self.http.request("GET", self.service_url, "get web service", self._key, max_attempts=max_attempts,
                                 read_timeout=read_timeout)
        return WebService.model_validate(resp.json())

    def _endpoints_json(self) -> bytes | None:
        """The body of the endpoint list, or None when the service has none (204)."""
        resp = self.http.request("GET", f"{self.service_url}/endpoints", "list endpoints", self._key,
                                 expect=(200, 204))
        return None if resp.status_code == 204 else resp.content

    def list_endpoints(self) -> list[Endpoint]:
        body = self._endpoints_json()
        return [] if body is None else [Endpoint.model_validate(e) for e in json.loads(body)]

    def endpoint_names(self) -> list[str]:
        """The names of the service's endpoints, read without building an object per endpoint (a service may
        hold 10,000: the names are what a fan-out needs)."""
        body = self._endpoints_json()
        if body is None:
            return []
        # Each JSON object becomes its "Name" as it is parsed: nested ones (resources, locations) collapse at once.
        names = json.loads(body, object_hook=lambda obj: obj.get("Name"))
        return [n for n in names if isinstance(n, str)]

    def get_endpoint(self, name: str) -> Endpoint:
        resp = self.http.request("GET", self._ep(name), f"get endpoint {name}", self._key, expect=(200, 204))
        if resp.status_code == 204:
            raise StudioApiError(404, "NotFound", f"endpoint {name} was not found", "EndpointNotFound",
                                 operation=f"get endpoint {name}")
        return Endpoint.model_validate(resp.json())

    def create_endpoint(self, name: str, description: str = "", throttle_level: str = "Low",
                        max_concurrent_calls: int | None = None, prevent_update: bool = False) -> Endpoint:
        body = {"Description": description, "ThrottleLevel": throttle_level,
                "MaxConcurrentCalls": max_concurrent_calls, "PreventUpdate": prevent_update}
        try:
            resp = self.http.request("PUT", self._ep(name), f"create endpoint {name}", self._key, json_body=body,
                                     expect=(200, 201, 202, 204))
        except StudioApiError as exc:
            if exc.status == 409 and exc.attempts > 1:
                return self.get_endpoint(name)  # a retry of this call: our own earlier try created it
            raise
        return Endpoint.model_validate(resp.json()) if resp.content else self.get_endpoint(name)

    def patch_model(self, name: str, resource_name: str, location: ResourceLocation) -> None:
        body = {"Resources": [{"Name": resource_name, "Location": location.model_dump()}]}
        self.http.request("PATCH", self._ep(name), f"patch endpoint {name}", self._key, json_body=body,
                          expect=(200, 202, 204))

    def refresh(self, name: str, overwrite_resources: bool) -> bool:
        """True when something changed (304 = no change)."""
        resp = self.http.request("POST", f"{self._ep(name)}/refresh", f"refresh endpoint {name}", self._key,
                                 json_body={"OverwriteResources": str(overwrite_resources)},
                                 expect=(200, 202, 204, 304))
        return resp.status_code != 304
