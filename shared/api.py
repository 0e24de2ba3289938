"""The HTTP API's request bodies (pydantic, strict: unknown fields are errors) and the shapes of its answers.

Kept apart from `azure.functions` so the rules can be tested alone; the blueprints only parse with these and
serialise what they return.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.ledger import Run
from shared.pipeline import EndpointResult

JSON_BODY_LIMIT = 64 * 1024


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class CreateEndpoint(Body):
    name: str = Field(min_length=1, max_length=24)
    description: str = Field("", max_length=2000)
    target: str | None = Field(None, max_length=64)
    throttle_level: Literal["Low", "High"] = Field("Low", alias="throttleLevel")
    max_concurrent_calls: int | None = Field(None, ge=1, le=200, alias="maxConcurrentCalls")


class PatchModel(Body):
    model: str = Field(min_length=1, max_length=1024, description="models/<path>.ilearner in this app's storage")
    target: str | None = Field(None, max_length=64)
    force: bool = Field(True, description="skip the gate (a manual patch is deliberate)")


class Rollback(Body):
    to: str | None = Field(None, max_length=128, description="a deployment id from the endpoint's history")
    target: str | None = Field(None, max_length=64)


class RetrainFromBlob(Body):
    blob: str = Field(min_length=1, max_length=1024, description="training-data/<path>.csv in this app's storage")


RUN_HIDDEN = {"claimed_by", "claimed_until", "smoke_row"}


def run_view(run: Run) -> dict[str, Any]:
    """A run as the API shows it: camelCase, no internal claim bookkeeping."""
    data = run.model_dump(exclude=RUN_HIDDEN)
    return {_camel(k): v for k, v in data.items()}


def result_view(result: EndpointResult) -> dict[str, Any]:
    return {"endpoint": result.endpoint, "outcome": result.outcome, "reason": result.reason,
            "deploymentId": result.deployment_id}


def camel_keys(value: Any) -> Any:
    """snake_case keys to camelCase, recursively (ledger rows use snake_case; the API speaks camelCase)."""
    if isinstance(value, dict):
        return {_camel(k) if isinstance(k, str) else k: camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
