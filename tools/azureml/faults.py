"""Deployment faults, beside the emulator's request faults (status, latency, drop, skip N - which apply to these
routes too, by their `azureml.*` route names):

- `stuck_seconds`: a matching deployment's create/update stays Creating/Updating until that many seconds after the
  request (a deadline), then goes on as usual;
- `fail_after_seconds`: a matching deployment's create/update ends Failed that many seconds after the request, with
  `code` (default ResourceNotReady, Azure ML's code for a container that crashes) and the error in its logs.

Flags: `--azureml-deployment-fault deployment=green*,stuck=600` or `...,fail_after=120,code=ResourceNotReady`;
API: `POST /admin/azureml/deployment-faults` with the same fields as JSON.
"""

from __future__ import annotations

import fnmatch
import uuid

from pydantic import BaseModel, Field, model_validator


class DeploymentFault(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    endpoint: str = "*"
    deployment: str = "*"
    stuck_seconds: float | None = None
    fail_after_seconds: float | None = None
    code: str = "ResourceNotReady"
    message: str = "The container exited during start-up (injected fault)."
    count: int | None = None  # None: every matching deployment operation
    hits: int = 0

    @model_validator(mode="after")
    def _one_kind(self) -> DeploymentFault:
        if (self.stuck_seconds is None) == (self.fail_after_seconds is None):
            raise ValueError("give exactly one of stuck_seconds and fail_after_seconds")
        return self

    def matches(self, endpoint: str, deployment: str) -> bool:
        return fnmatch.fnmatchcase(endpoint, self.endpoint) and fnmatch.fnmatchcase(deployment, self.deployment)


def parse_flag(text: str) -> DeploymentFault:
    """`deployment=green*,stuck=600` / `endpoint=e1,fail_after=120,code=ResourceNotReady`."""
    names = {"stuck": "stuck_seconds", "fail_after": "fail_after_seconds"}
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"'{part}' is not key=value")
        fields[names.get(key.strip(), key.strip())] = value.strip()
    return DeploymentFault.model_validate(fields)


def take(faults: list[DeploymentFault], endpoint: str, deployment: str) -> DeploymentFault | None:
    for rule in faults:
        if rule.matches(endpoint, deployment):
            rule.hits += 1
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    faults.remove(rule)
            return rule
    return None
