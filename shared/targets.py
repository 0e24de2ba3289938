"""A target: a predictive web service and the scoring endpoints its retrained model goes to, and the checks of
the Studio (classic) URLs that name it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

MAX_NAMED_ENDPOINTS = 1000  # a run's endpoint list is one table property (64 KB): more go as "*"


def csv_list(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    raise ValueError("expected a comma-separated list")


def check_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


WORKSPACE_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
                          r"workspaces/[^/]+$", re.IGNORECASE)


class AzureMLTarget(BaseModel):
    """An Azure Machine Learning workspace's online endpoints (kind `azureml`): how a job trains, which model name
    versions are registered under, and how each endpoint's new deployment is made and given traffic."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: str  # the workspace's ARM id
    job: dict[str, Any]  # a command job's properties (command, environmentId, computeId, ...): the app adds its
    # `training_data` input and its `model` and `evaluation` outputs
    model_name: str = "retrained-model"
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = Field(1, ge=1, le=50)
    traffic_steps: list[int] = Field(default_factory=lambda: [10, 100])  # shares of the new deployment, checked each
    mirror_percent: int = Field(0, ge=0, le=50)  # mirrored to the new deployment first (0: no mirroring)
    keep_deployments: int = Field(1, ge=0, le=10)  # earlier deployments kept at 0 %: a rollback is a traffic switch
    datastore: str | None = None  # data and outputs as azureml://datastores/<datastore>/paths/...; else blob URLs
    location: str | None = None  # of new endpoints and deployments (default: the workspace's)
    deployment_timeout_minutes: float = Field(20, gt=0)  # how long one deployment operation is waited for
    arm_url: str = "https://management.azure.com"
    api_version: str = "2024-10-01"
    scoring_resource: str = "https://ml.azure.com"  # the Entra audience of AADToken endpoints

    @field_validator("workspace_id")
    @classmethod
    def _workspace(cls, value: str) -> str:
        if not WORKSPACE_ID.match(value.rstrip("/")):
            raise ValueError("workspace_id must be a workspace's ARM id: /subscriptions/<id>/resourceGroups/<rg>/"
                             "providers/Microsoft.MachineLearningServices/workspaces/<name>")
        return value.rstrip("/")

    @field_validator("job")
    @classmethod
    def _job(cls, value: dict[str, Any]) -> dict[str, Any]:
        missing = [k for k in ("command", "environmentId") if not value.get(k)]
        if missing:
            raise ValueError(f"job needs {', '.join(missing)} (a command job's properties)")
        return value

    @field_validator("traffic_steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value or value[-1] != 100 or any(not 0 < v <= 100 for v in value) or value != sorted(set(value)):
            raise ValueError("traffic_steps rise from above 0 to 100, e.g. [10, 100]")
        return value

    @field_validator("arm_url")
    @classmethod
    def _arm(cls, value: str) -> str:
        return check_url(value, "arm_url")


class Target(BaseModel):
    """A service whose scoring endpoints retrained models go to, and how data routes to them. `kind` names the
    adapters that drive it (`classic`: a Studio (classic) predictive web service)."""

    name: str = "default"
    kind: str = "classic"
    management_url: str | None = None  # https://management.azureml.net/workspaces/<ws>/webservices/<service id>
    management_key: SecretStr | None = None
    resource_name: str | None = None
    endpoints: list[str] = Field(default_factory=list)  # ["*"]: every non-default endpoint
    tenant_routing: bool = True  # <data_prefix><tenant>/<file>.csv -> endpoint <tenant>
    data_prefix: str = ""
    bes_url: str | None = None  # overrides the app-wide training service
    bes_key: SecretStr | None = None
    azureml: AzureMLTarget | None = None  # kind azureml

    @field_validator("management_url")
    @classmethod
    def _management_url(cls, value: str | None) -> str | None:
        return check_service_url(value) if value is not None else None

    @model_validator(mode="after")
    def _classic_complete(self) -> Target:
        if self.kind == "classic":
            missing = [n for n in ("management_url", "resource_name") if not getattr(self, n)]
            if missing:
                raise ValueError(f"target '{self.name}' (kind classic) needs {', '.join(missing)}")
        if self.kind == "azureml" and self.azureml is None:
            raise ValueError(f"target '{self.name}' (kind azureml) needs an \"azureml\" object (workspace_id, job, "
                             "...)")
        return self

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoints(cls, value: object) -> list[str]:
        names = csv_list(value)
        if len(names) > MAX_NAMED_ENDPOINTS:
            raise ValueError(f"{len(names)} endpoints named; at most {MAX_NAMED_ENDPOINTS:,} - use * for every "
                             "endpoint")
        return names

    @field_validator("bes_url")
    @classmethod
    def _bes(cls, value: str | None) -> str | None:
        return normalise_bes_url(value) if value else None

    @field_validator("data_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        return value + "/" if value else ""


def check_service_url(value: str) -> str:
    value = check_url(value, "the management URL")
    path = urlsplit(value).path.strip("/").split("/")
    if len(path) != 4 or path[0] != "workspaces" or path[2] != "webservices":
        raise ValueError("the management URL must end in /workspaces/<workspace id>/webservices/<web service id>")
    return value


def normalise_bes_url(value: str) -> str:
    """Accept an ApiLocation or a BES jobs URL (`.../jobs?api-version=2.0`); return the ApiLocation."""
    value = check_url(value.split("?")[0], "the BES URL")
    return value[: -len("/jobs")] if value.endswith("/jobs") else value
