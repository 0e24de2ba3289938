"""The HTTP API's request bodies and query strings (pydantic, strict: unknown fields and parameters are errors, a
flag is a JSON boolean - `"yes"` or `1` is not -, a query flag is `true` or `false`; camelCase on the wire through
the alias generator). Kept apart from `azure.functions` so the rules can be tested alone; the blueprints parse with
these and serialise what the use cases return."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

JSON_BODY_LIMIT = 64 * 1024


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True,
                              validate_by_alias=True, str_strip_whitespace=True, strict=True)


class Query(BaseModel):
    """A route's query parameters (strings on the wire), by their camelCase names only. `code` (a function key,
    which the host reads) is taken out before these are validated."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=False,
                              validate_by_alias=True)


QueryFlag = Literal["true", "false"]


class NoQuery(Query):
    pass


class UploadQuery(Query):
    name: str | None = Field(None, min_length=1, max_length=1024)
    endpoints: str | None = Field(None, max_length=30_000)
    dry_run: QueryFlag = "false"


class TargetQuery(Query):
    target: str | None = Field(None, min_length=1, max_length=64)


class EndpointQuery(TargetQuery):
    history_limit: int = Field(20, ge=1, le=500)
    before: str | None = Field(None, pattern=r"^\d{4}-\d\d-\d\dT[0-9:.]+Z$", description="an attempt's createdAt")


class RunsQuery(Query):
    status: str | None = Field(None, max_length=1000)
    limit: int = Field(50, ge=1, le=500)


class CreateEndpoint(Body):
    name: str = Field(min_length=1, max_length=24)
    description: str = Field("", max_length=2000)
    target: str | None = Field(None, max_length=64)
    throttle_level: Literal["Low", "High"] = "Low"
    max_concurrent_calls: int | None = Field(None, ge=1, le=200)


class PatchModel(Body):
    model: str = Field(min_length=1, max_length=1024, description="models/<path>.ilearner in this app's storage")
    target: str | None = Field(None, max_length=64)
    force: bool = Field(False, description="deploy even below the gate (recorded as forced, with the caller)")


class Rollback(Body):
    to: str | None = Field(None, max_length=128, description="a deployment id from the endpoint's history")
    target: str | None = Field(None, max_length=64)


class Decision(Body):
    reason: str | None = Field(None, max_length=2000, description="why (kept on the run)")


class RetrainFromBlob(Body):
    blob: str = Field(min_length=1, max_length=1024, description="training-data/<path>.csv in this app's storage")
    dry_run: bool = Field(False, description="validate and route only: start nothing")
