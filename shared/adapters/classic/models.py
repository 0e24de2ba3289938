"""Pydantic models of the Studio (classic) JSON, with the reference's exact field names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

JobStatusName = Literal["NotStarted", "Running", "Failed", "Cancelled", "Finished"]
_STATUS_BY_NUMBER: dict[int, JobStatusName] = {0: "NotStarted", 1: "Running", 2: "Failed", 3: "Cancelled",
                                               4: "Finished"}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AzureBlobDataReference(_Wire):
    """`BaseLocation` ends in '/', `RelativeLocation` has no leading '/', `SasBlobToken` starts with '?'."""

    ConnectionString: str | None = None
    RelativeLocation: str
    BaseLocation: str | None = None
    SasBlobToken: str | None = None


class ResourceLocation(_Wire):
    BaseLocation: str
    RelativeLocation: str
    SasBlobToken: str


class EndpointResource(_Wire):
    Name: str
    Kind: str | None = None
    Location: dict[str, Any] | None = None


class Endpoint(_Wire):
    Name: str
    Description: str | None = None
    CreationTime: str | None = None
    WorkspaceId: str | None = None
    WebServiceId: str | None = None
    HelpLocation: str | None = None
    PrimaryKey: str | None = Field(None, repr=False)
    SecondaryKey: str | None = Field(None, repr=False)
    ApiLocation: str | None = None
    Version: str | None = None
    PreventUpdate: bool | None = None
    MaxConcurrentCalls: int | None = None
    DiagnosticsTraceLevel: str | None = None
    ThrottleLevel: str | None = None
    Resources: list[EndpointResource] | None = None

    def resource(self, name: str) -> EndpointResource | None:
        return next((r for r in self.Resources or [] if r.Name == name), None)

    def location(self, resource_name: str) -> dict[str, Any]:
        """The named resource's Location (BaseLocation, RelativeLocation, SasBlobToken), or {} when it has none."""
        res = self.resource(resource_name)
        return dict(res.Location or {}) if res else {}

    def model_path(self, resource_name: str) -> str | None:
        """The RelativeLocation of the model the named resource holds (the model the endpoint serves)."""
        return self.location(resource_name).get("RelativeLocation")


class WebService(_Wire):
    Id: str
    Name: str | None = None
    Description: str | None = None
    CreationTime: str | None = None
    WorkspaceId: str | None = None
    DefaultEndpointName: str | None = None
    EndpointCount: int | None = None


class JobStatus(_Wire):
    """BES GET job. `StatusCode` may come as a swagger name or the legacy integer (0-4); 'Canceled' is accepted."""

    StatusCode: JobStatusName
    Results: dict[str, AzureBlobDataReference] | None = None
    Details: str | None = None

    @field_validator("StatusCode", mode="before")
    @classmethod
    def _status(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return _STATUS_BY_NUMBER.get(value, value)
        if isinstance(value, str):
            if value.isdigit():
                return _STATUS_BY_NUMBER.get(int(value), value)
            return "Cancelled" if value == "Canceled" else value
        return value

    @property
    def terminal(self) -> bool:
        return self.StatusCode in ("Failed", "Cancelled", "Finished")


class BatchJobRequest(_Wire):
    Inputs: dict[str, AzureBlobDataReference]
    Outputs: dict[str, AzureBlobDataReference] | None = None
    GlobalParameters: dict[str, str] = Field(default_factory=dict)
