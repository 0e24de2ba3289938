"""Typed app settings (environment variables / local.settings.json), validated once at first use.

One target (a predictive web service and the endpoints a trained model goes to) is configured with flat
`RETRAIN_*` settings; many (multi-tenant, several services) with one JSON setting, `RETRAIN_TARGETS`. A missing or
malformed setting raises `SettingsError` naming the setting and what is wrong. The hosts the app may call are
exactly the ones configured here (`allowed_hosts`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.gate import Gate
from shared.targets import Target, check_service_url, check_url, csv_list, normalise_bes_url

ADULT_COLUMNS = ("age,workclass,fnlwgt,education,education-num,marital-status,occupation,relationship,race,sex,"
                 "capital-gain,capital-loss,hours-per-week,native-country,income")
ADULT_NUMERIC = "age,fnlwgt,education-num,capital-gain,capital-loss,hours-per-week"
__all__ = ["Settings", "SettingsError", "Target", "get_settings", "load_settings"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _json_setting(value: object, kind: type, what: str) -> object:
    """Decode a JSON-valued setting given as text (an empty string means unset)."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"expected {what}")
    return value


class FanOutSettings(BaseSettings):
    """How a fan-out runs: in one invocation ("inline": each endpoint's verification waits in a thread), or spread
    over queue messages ("queue": batches on the `retrain-work` queue, each endpoint re-checked by a message due after
    the switch), or ("auto", the default) on the queue when the target proves a swap by later looks and the fan-out
    is more than one wave of RETRAIN_PATCH_CONCURRENCY endpoints, inline otherwise; the most Studio calls a second
    the whole app makes to one target (0: no ceiling), shared by at most RETRAIN_MAX_INSTANCES instances (Flex
    Consumption's maximumInstanceCount): each takes its share."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False, case_sensitive=False)

    storage_queue_uri: str | None = Field(None, validation_alias="AzureWebJobsStorage__queueServiceUri")
    fanout_mode: Literal["auto", "inline", "queue"] = Field("auto", validation_alias="RETRAIN_FANOUT_MODE")
    target_calls_per_second: float = Field(0, ge=0, validation_alias="RETRAIN_TARGET_CALLS_PER_SECOND")
    max_instances: int = Field(100, ge=1, le=1000, validation_alias="RETRAIN_MAX_INSTANCES")


class Settings(FanOutSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False, case_sensitive=False)

    storage_connection_string: SecretStr | None = Field(None, validation_alias="AzureWebJobsStorage")
    storage_account_name: str | None = Field(None, validation_alias="AzureWebJobsStorage__accountName")
    storage_blob_uri: str | None = Field(None, validation_alias="AzureWebJobsStorage__blobServiceUri")
    storage_table_uri: str | None = Field(None, validation_alias="AzureWebJobsStorage__tableServiceUri")
    storage_client_id: str | None = Field(None, validation_alias="AzureWebJobsStorage__clientId")

    data_container: str = Field("training-data", validation_alias="RETRAIN_DATA_CONTAINER")
    models_container: str = Field("models", validation_alias="RETRAIN_MODELS_CONTAINER")
    rejected_container: str = Field("rejected", validation_alias="RETRAIN_REJECTED_CONTAINER")
    table_prefix: str = Field("retrain", validation_alias="RETRAIN_TABLE_PREFIX",
                              pattern=r"^[A-Za-z][A-Za-z0-9]{0,40}$")

    bes_url: str | None = Field(None, validation_alias="RETRAIN_BES_URL")
    bes_key: SecretStr | None = Field(None, validation_alias="RETRAIN_BES_KEY")
    bes_global_parameters: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict,
                                                                       validation_alias="RETRAIN_BES_GLOBAL_PARAMETERS")
    model_output: str = Field("output1", validation_alias="RETRAIN_MODEL_OUTPUT")
    evaluation_output: str = Field("output2", validation_alias="RETRAIN_EVALUATION_OUTPUT")

    management_url: str | None = Field(None, validation_alias="RETRAIN_MANAGEMENT_URL")
    management_key: SecretStr | None = Field(None, validation_alias="RETRAIN_MANAGEMENT_KEY")
    resource_name: str | None = Field(None, validation_alias="RETRAIN_RESOURCE_NAME")
    endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="RETRAIN_ENDPOINTS")
    tenant_routing: bool = Field(True, validation_alias="RETRAIN_TENANT_ROUTING")
    targets_json: Annotated[list[Target] | None, NoDecode] = Field(None, validation_alias="RETRAIN_TARGETS")

    gate_rules: Annotated[dict[str, Any] | None, NoDecode] = Field(None, validation_alias="RETRAIN_GATE")
    gate_metric: str = Field("AUC", validation_alias="RETRAIN_GATE_METRIC")
    gate_minimum: float = Field(0.7, validation_alias="RETRAIN_GATE_MINIMUM")
    # Off unless set: metrics of different data sets' held-out splits are only roughly comparable.
    gate_min_improvement: float | None = Field(None, validation_alias="RETRAIN_GATE_MIN_IMPROVEMENT")

    label_column: str = Field("income", validation_alias="RETRAIN_LABEL_COLUMN")
    required_columns: Annotated[list[str], NoDecode] = Field(default_factory=lambda: csv_list(ADULT_COLUMNS),
                                                             validation_alias="RETRAIN_REQUIRED_COLUMNS")
    numeric_columns: Annotated[list[str], NoDecode] = Field(default_factory=lambda: csv_list(ADULT_NUMERIC),
                                                            validation_alias="RETRAIN_NUMERIC_COLUMNS")
    label_values: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [">50K", "<=50K"],
                                                         validation_alias="RETRAIN_LABEL_VALUES")
    min_rows: int = Field(100, ge=1, validation_alias="RETRAIN_MIN_ROWS")
    max_data_bytes: int = Field(5 * 1024**3, ge=1, validation_alias="RETRAIN_MAX_DATA_BYTES")
    max_upload_bytes: int = Field(100 * 1024**2, ge=1, validation_alias="RETRAIN_MAX_UPLOAD_BYTES")
    max_line_bytes: int = Field(1024**2, ge=64, le=64 * 1024**2, validation_alias="RETRAIN_MAX_LINE_BYTES")

    sas_minutes: float = Field(60, gt=0, le=7 * 24 * 60, validation_alias="RETRAIN_SAS_MINUTES")
    sas_refresh_margin_minutes: float = Field(5, ge=0, validation_alias="RETRAIN_SAS_REFRESH_MARGIN_MINUTES")
    eventgrid_endpoint: str | None = Field(None, validation_alias="RETRAIN_EVENTGRID_ENDPOINT")
    eventgrid_key: SecretStr | None = Field(None, validation_alias="RETRAIN_EVENTGRID_KEY")
    event_source: str = Field("/retrain/functions", validation_alias="RETRAIN_EVENT_SOURCE")

    patch_concurrency: int = Field(16, ge=1, le=256, validation_alias="RETRAIN_PATCH_CONCURRENCY")
    http_max_attempts: int = Field(6, ge=1, le=20, validation_alias="RETRAIN_HTTP_MAX_ATTEMPTS")
    http_backoff_seconds: float = Field(0.5, ge=0, validation_alias="RETRAIN_HTTP_BACKOFF_SECONDS")
    http_max_backoff_seconds: float = Field(30, ge=0, validation_alias="RETRAIN_HTTP_MAX_BACKOFF_SECONDS")
    connect_timeout_seconds: float = Field(5, gt=0, validation_alias="RETRAIN_CONNECT_TIMEOUT_SECONDS")
    read_timeout_seconds: float = Field(60, gt=0, validation_alias="RETRAIN_READ_TIMEOUT_SECONDS")

    job_poll_seconds: float = Field(2, gt=0, validation_alias="RETRAIN_JOB_POLL_SECONDS")
    job_wait_seconds: float = Field(60, ge=0, validation_alias="RETRAIN_JOB_WAIT_SECONDS")
    job_deadline_minutes: float = Field(120, gt=0, validation_alias="RETRAIN_JOB_DEADLINE_MINUTES")
    # The real service took ~30 s to serve a PATCHed model: how long verification waits for proof it switched.
    verify_switch_seconds: float = Field(45, ge=0, validation_alias="RETRAIN_VERIFY_SWITCH_SECONDS")
    verify_poll_seconds: float = Field(2, gt=0, validation_alias="RETRAIN_VERIFY_POLL_SECONDS")
    # After a deployment is verified, reconcile keeps checking it this long and rolls back one that stops serving.
    watch_minutes: float = Field(30, ge=0, validation_alias="RETRAIN_WATCH_MINUTES")
    smoke_row: Annotated[dict[str, Any] | None, NoDecode] = Field(None, validation_alias="RETRAIN_SMOKE_ROW")
    # Endpoint leases and run claims: renewed by their holder while it works, over this long after it died.
    lease_seconds: float = Field(30, ge=5, validation_alias="RETRAIN_LEASE_SECONDS")
    # How long an operator's HTTP call waits for an endpoint another deployment holds (then 409 EndpointBusy).
    interactive_wait_seconds: float = Field(20, ge=0, validation_alias="RETRAIN_INTERACTIVE_WAIT_SECONDS")
    reconcile_schedule: str = Field("0 */5 * * * *", validation_alias="RETRAIN_RECONCILE_SCHEDULE")
    approval: Literal["auto", "manual"] = Field("auto", validation_alias="RETRAIN_APPROVAL")
    # Operator actions: `key` (any function key; local runs) or `entra` (an Entra principal with the app role).
    operator_auth: Literal["key", "entra"] = Field("key", validation_alias="RETRAIN_OPERATOR_AUTH")
    operator_role: str = Field("Retrain.Operator", validation_alias="RETRAIN_OPERATOR_ROLE")
    coalesce_seconds: float = Field(0, ge=0, le=600, validation_alias="RETRAIN_COALESCE_SECONDS")
    cancel_superseded_jobs: bool = Field(True, validation_alias="RETRAIN_CANCEL_SUPERSEDED_JOBS")
    approval_expiry_hours: float = Field(72, gt=0, validation_alias="RETRAIN_APPROVAL_EXPIRY_HOURS")

    @field_validator("endpoints", "required_columns", "numeric_columns", "label_values", mode="before")
    @classmethod
    def _lists(cls, value: object) -> list[str]:
        return csv_list(value)

    @field_validator("bes_global_parameters", "smoke_row", "gate_rules", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        return _json_setting(value, dict, "a JSON object")

    @field_validator("targets_json", mode="before")
    @classmethod
    def _targets(cls, value: object) -> object:
        return _json_setting(value, list, "a JSON array of targets")

    @field_validator("management_url")
    @classmethod
    def _service_url(cls, value: str | None) -> str | None:
        return check_service_url(value) if value else None

    @field_validator("bes_url", "eventgrid_endpoint", "storage_blob_uri", "storage_table_uri")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return check_url(value, "the URL") if value else None

    @model_validator(mode="after")
    def _complete(self) -> Settings:
        if self.storage_connection_string is None and not (self.storage_account_name or self.storage_blob_uri):
            raise ValueError("AzureWebJobsStorage: set a connection string, or AzureWebJobsStorage__accountName "
                             "(or __blobServiceUri) for a managed identity")
        if self.storage_connection_string is None and not self.storage_account_name and not self.storage_table_uri:
            raise ValueError("AzureWebJobsStorage__tableServiceUri is required with __blobServiceUri (the ledger's "
                             "tables), unless AzureWebJobsStorage__accountName is set")
        if self.targets_json is None and self.management_url is None:
            raise ValueError("RETRAIN_MANAGEMENT_URL (with RETRAIN_MANAGEMENT_KEY and RETRAIN_RESOURCE_NAME) or "
                             "RETRAIN_TARGETS is required: where do trained models go?")
        if self.targets_json is None:
            for name, value in (("RETRAIN_MANAGEMENT_KEY", self.management_key),
                                ("RETRAIN_RESOURCE_NAME", self.resource_name)):
                if not value:
                    raise ValueError(f"{name} is required with RETRAIN_MANAGEMENT_URL")
        for target in self.targets:
            if target.kind != "classic":
                continue
            if not (target.bes_url or self.bes_url):
                raise ValueError(f"RETRAIN_BES_URL is required (target '{target.name}' names no bes_url)")
            if not (target.bes_key or self.bes_key):
                raise ValueError(f"RETRAIN_BES_KEY is required (target '{target.name}' names no bes_key)")
            if not (target.management_key or self.management_key):
                raise ValueError(f"RETRAIN_MANAGEMENT_KEY is required (target '{target.name}' names no "
                                 "management_key)")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("RETRAIN_TARGETS: target names must be unique")
        if self.gate_rules is not None:
            single = {"gate_metric", "gate_minimum", "gate_min_improvement"} & self.model_fields_set
            if single:
                raise ValueError("RETRAIN_GATE replaces RETRAIN_GATE_METRIC, _MINIMUM and _MIN_IMPROVEMENT: set one "
                                 "or the other")
            Gate.parse(self.gate_rules)
        if self.label_column not in self.required_columns:
            self.required_columns.append(self.label_column)
        return self

    # ---- derived -----------------------------------------------------------------------------------------
    @functools.cached_property
    def targets(self) -> list[Target]:
        if self.targets_json is not None:
            return self.targets_json
        assert self.management_url and self.management_key and self.resource_name
        return [Target(name="default", management_url=self.management_url, management_key=self.management_key,
                       resource_name=self.resource_name, endpoints=self.endpoints,
                       tenant_routing=self.tenant_routing)]

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    def management_key_for(self, target: Target) -> SecretStr:
        """A classic target's management key: its own, else RETRAIN_MANAGEMENT_KEY (kept in Key Vault)."""
        key = target.management_key or self.management_key
        assert key is not None
        return key

    def bes_for(self, target: Target) -> tuple[str, SecretStr]:
        url, key = target.bes_url or self.bes_url, target.bes_key or self.bes_key
        assert url and key
        return normalise_bes_url(url), key

    @functools.cached_property
    def gate(self) -> Gate:
        """RETRAIN_GATE's rules, or the single-metric settings as one rule."""
        if self.gate_rules is not None:
            return Gate.parse(self.gate_rules)
        return Gate.single(self.gate_metric, self.gate_minimum, self.gate_min_improvement)

    @property
    def allowed_hosts(self) -> set[str]:
        """Every host the app may call (management, BES, RRS, Event Grid); nothing from a request body."""
        classic = [t for t in self.targets if t.kind == "classic"]
        urls = [str(t.management_url) for t in classic] + [self.bes_for(t)[0] for t in classic]
        if self.eventgrid_endpoint:
            urls.append(self.eventgrid_endpoint)
        return {urlsplit(u).netloc.lower() for u in urls}

    def host_allowed(self, host: str) -> bool:
        """A configured host, or one of the real service's regional `*.services.azureml.net` hosts (scoring URLs
        come from the management API)."""
        host = host.lower()
        return host in self.allowed_hosts or host.endswith(".services.azureml.net")

    def rrs_host_allowed(self, api_location: str) -> bool:
        return self.host_allowed(urlsplit(api_location).netloc)


def _format_error(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where != "settings" else message)
    return "invalid app settings: " + "; ".join(problems)


def _unresolved_references(environ: Mapping[str, str]) -> list[str]:
    """Settings that hold a Key Vault reference's literal text: the platform puts it there when it cannot resolve
    the reference (the identity has no access yet, the secret is missing), and it must never pass for a key."""
    names = {str(f.validation_alias).lower() for f in Settings.model_fields.values()}
    return sorted(k for k, v in environ.items()
                  if k.lower() in names and isinstance(v, str) and v.lstrip().startswith("@Microsoft.KeyVault("))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Validate settings from `environ` (default: the process environment)."""
    unresolved = _unresolved_references(os.environ if environ is None else environ)
    if unresolved:
        raise SettingsError(f"{', '.join(unresolved)}: an unresolved Key Vault reference (@Microsoft.KeyVault(...)) - "
                            "the app's identity cannot read the secret yet: give it Key Vault Secrets User on the "
                            "vault, check the secret exists, then restart the app")
    try:
        if environ is None:
            return Settings()
        return Settings.model_validate({k: v for k, v in environ.items()})
    except ValidationError as exc:
        raise SettingsError(_format_error(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The app's settings, loaded once on first use."""
    return load_settings()
