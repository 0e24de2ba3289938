"""A target: a predictive web service and the scoring endpoints its retrained model goes to, and the checks of
the Studio (classic) URLs that name it."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

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


class Target(BaseModel):
    """A predictive web service and the scoring endpoints its retrained model goes to."""

    name: str = "default"
    management_url: str  # https://management.azureml.net/workspaces/<ws>/webservices/<predictive service id>
    management_key: SecretStr
    resource_name: str
    endpoints: list[str] = Field(default_factory=list)  # ["*"]: every non-default endpoint
    tenant_routing: bool = True  # <data_prefix><tenant>/<file>.csv -> endpoint <tenant>
    data_prefix: str = ""
    bes_url: str | None = None  # overrides the app-wide training service
    bes_key: SecretStr | None = None

    @field_validator("management_url")
    @classmethod
    def _management_url(cls, value: str) -> str:
        return check_service_url(value)

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
