"""The stand-in's settings: identities of the workspace, timings (fast by default, realistic on request), limits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

API_VERSION = "2024-10-01"
PROVIDER = "Microsoft.MachineLearningServices"
MANAGEMENT_AUDIENCE = "https://management.azure.com"
AAD_SCORING_AUDIENCE = "https://ml.azure.com"


@dataclass(frozen=True)
class Timing:
    """Seconds each operation takes (the real service: minutes for a deployment; here seconds by default)."""

    endpoint_create: float = 0.5
    endpoint_update: float = 0.3
    endpoint_delete: float = 0.3
    deployment_create: float = 1.0
    deployment_update: float = 0.6
    deployment_delete: float = 0.3
    keys: float = 0.1
    job_queued: float = 0.2
    job_preparing: float = 0.2
    job_running_min: float = 0.2
    job_finalizing: float = 0.2
    job_cancel: float = 0.2
    retry_after: int = 1  # the Retry-After the LRO answers carry (the spec allows 10..600; 1 keeps tests fast)


FAST = Timing()
# What the documentation and experience suggest for a managed online endpoint: an endpoint in a minute or two, a
# deployment in several minutes (up to 15 the first time an image is built), jobs queue and prepare for minutes.
REALISTIC = Timing(endpoint_create=90, endpoint_update=30, endpoint_delete=60, deployment_create=480,
                   deployment_update=240, deployment_delete=120, keys=5, job_queued=30, job_preparing=90,
                   job_running_min=30, job_finalizing=20, job_cancel=15, retry_after=15)
TIMINGS = {"fast": FAST, "realistic": REALISTIC}


@dataclass(frozen=True)
class Limits:
    """The documented defaults (how-to-manage-quotas): 20 deployments per endpoint, 50 instances per deployment,
    100 endpoints per subscription and region; instance quota counts each deployment's instances plus the 20 %
    reserved for upgrades (10 instances need quota for 12)."""

    deployments_per_endpoint: int = 20
    instances_per_deployment: int = 50
    endpoints: int = 100
    instance_quota: int = 36


@dataclass(frozen=True)
class AzureMLConfig:
    workspace_seed: str = "local"  # the ids below derive from it (the emulator passes its workspace id)
    subscription: str = ""  # "" = derived from the seed
    resource_group: str = "retrain-local"
    workspace_name: str = "retrain-aml"
    location: str = "local"
    timing: Timing = FAST
    limits: Limits = field(default_factory=Limits)
    routing_seed: int = 0
    token_seconds: int = 3600  # lifetime of the aml_token the token route issues

    @property
    def subscription_id(self) -> str:
        return self.subscription or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                   f"azureml-standin/{self.workspace_seed}/subscription"))

    @property
    def workspace_guid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"azureml-standin/{self.workspace_seed}/workspace"))

    @property
    def workspace_id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/{PROVIDER}"
                f"/workspaces/{self.workspace_name}")

    @property
    def blobstore_container(self) -> str:
        """The container behind the `workspaceblobstore` datastore (real ones are azureml-blobstore-<guid>)."""
        return f"azureml-blobstore-{self.workspace_guid}"


def timing_from_flags(preset: str, overrides: list[str]) -> Timing:
    """`--azureml-timing fast|realistic` plus `--azureml-time deployment_create=30` overrides."""
    if preset not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}")
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not hasattr(FAST, key.strip()):
            raise ValueError(f"'{item}' is not <timing>=<seconds> (timings: {', '.join(FAST.__dataclass_fields__)})")
        values[key.strip()] = int(value) if key.strip() == "retry_after" else float(value)
    return replace(TIMINGS[preset], **values)


def limits_from_flags(instance_quota: int, overrides: list[str]) -> Limits:
    """`--azureml-instance-quota N` plus `--azureml-limit deployments_per_endpoint=3` overrides."""
    values: dict[str, int] = {"instance_quota": instance_quota}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in Limits.__dataclass_fields__:
            raise ValueError(f"'{item}' is not <limit>=<n> (limits: {', '.join(Limits.__dataclass_fields__)})")
        values[key.strip()] = int(value)
    return Limits(**values)
