"""What every HTTP handler shares: JSON responses, the error envelope, body parsing and the exception -> status map.

Errors are `{"error": {"code", "message"}}` with a status that fits; never a stack trace, never a secret (the
message passes through the log scrubber before it leaves). Anything unexpected becomes a 500 that names the
invocation id, so the operator can find the logged traceback.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import azure.functions as func
from azure.core.exceptions import AzureError, ServiceRequestError
from pydantic import BaseModel, ValidationError

from blueprints.principal import NotAnOperator
from blueprints.runtime import invocation
from shared.errors import AlreadyExists, NotFound, Refused, ServiceError, Stale
from shared.http_bodies import JSON_BODY_LIMIT, Query
from shared.logs import scrub
from shared.settings import SettingsError

log = logging.getLogger("blueprints.http")
M = TypeVar("M", bound=BaseModel)
Q = TypeVar("Q", bound=Query)
JSON = "application/json"
Handler = Callable[[func.HttpRequest, func.Context], func.HttpResponse]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(scrub(json.dumps(body, default=str)), status_code=status, headers=headers,
                             mimetype="application/json", charset="utf-8")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> func.HttpResponse:
    return json_response({"error": {"code": code, "message": message, **extra}}, status, headers)


def content_type(req: func.HttpRequest) -> str:
    """The request's media type, lower case, without parameters ('' when none was sent)."""
    return (req.headers.get("content-type") or "").split(";")[0].strip().lower()


def parse_body(req: func.HttpRequest, model: type[M], limit: int = JSON_BODY_LIMIT, other: str = "") -> M:
    """The JSON body as `model`. `other` names what else the route takes (e.g. a CSV upload as text/csv): every
    answer about a body of the wrong kind says so. A body without a Content-Type is read as JSON when it is."""
    raw = req.get_body() or b""
    sent = content_type(req)
    hint = f" ({other})" if other else ""
    if sent not in ("", JSON):
        raise ApiError(415, "UnsupportedMediaType", f"this route takes {JSON}{hint}, not {sent}")
    if len(raw) > limit:
        if not sent:
            raise ApiError(415, "UnsupportedMediaType", f"a body of {len(raw)} bytes without a Content-Type: send "
                           f"Content-Type: {JSON} for a JSON body of at most {limit} bytes{hint}")
        raise ApiError(413, "PayloadTooLarge", f"the JSON body is {len(raw)} bytes; the limit is {limit}{hint}")
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        if not sent:
            raise ApiError(415, "UnsupportedMediaType", f"the body has no Content-Type and is not JSON: send "
                           f"Content-Type: {JSON}{hint}") from None
        raise ApiError(400, "InvalidJson", f"the body is not valid JSON: {exc}{hint}") from None
    except RecursionError:
        raise ApiError(400, "InvalidJson", "the body nests too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidJson", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "InvalidRequest", _problems(exc, "body")) from None


def parse_query(req: func.HttpRequest, model: type[Q], other: str = "") -> Q:
    """The query string as `model`: an unknown or malformed parameter is a 400 naming what the route takes.
    `code` (a function key, read by the host) is not the app's."""
    params = {k: v for k, v in req.params.items() if k != "code"}
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        takes = ", ".join(sorted(f.alias or n for n, f in model.model_fields.items())) or "no query parameters"
        raise ApiError(400, "InvalidRequest", f"{_problems(exc, 'query')} (this request takes: {takes}"
                       + (f"; {other})" if other else ")")) from None


def _problems(exc: ValidationError, where: str) -> str:
    def one(error: Any) -> str:
        field = ".".join(str(p) for p in error["loc"]) or where
        if error["type"] == "extra_forbidden":
            return f"unknown {'query parameter' if where == 'query' else 'field'} '{field}'"
        return f"{field}: {error['msg']}"

    return "; ".join(one(e) for e in exc.errors())


def _service_error(exc: ServiceError) -> func.HttpResponse:
    """A training or serving service's failure, as the caller should see it."""
    if exc.unreachable:
        return error_response(504, "UpstreamUnreachable", f"the service could not be reached: {exc}",
                              {"Retry-After": "30"})
    if exc.transient:
        headers = {"Retry-After": str(int(exc.retry_after or 30))}
        return error_response(503, "UpstreamUnavailable", f"the service is not answering: {exc}", headers)
    if exc.status in (401, 403):  # our credentials, not the caller's: a server-side problem
        return error_response(502, "UpstreamAuthFailed", f"the service refused the app's credentials: {exc.message}")
    status = exc.status if exc.status is not None and 400 <= exc.status < 500 else 502
    detail = getattr(exc, "detail_code", None)
    return error_response(status, exc.code + (f"/{detail}" if detail else ""), exc.message or str(exc))


def api(handler: Handler) -> Handler:
    """Run a handler inside the invocation's log context and turn exceptions into JSON errors."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        with invocation(context):
            try:
                return handler(req, context)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)
            except NotAnOperator as exc:
                return error_response(exc.status, "OperatorRequired", str(exc))
            except NotFound as exc:
                return error_response(404, "NotFound", str(exc))
            except Refused as exc:
                return error_response(409 if exc.conflict else 400, exc.code, str(exc))
            except (AlreadyExists, Stale) as exc:
                return error_response(409, "Conflict", f"{exc}; read again and retry")
            except SettingsError as exc:
                log.error("configuration problem: %s", exc)
                return error_response(500, "ConfigurationError", str(exc))
            except ServiceError as exc:
                return _service_error(exc)
            except ServiceRequestError as exc:
                log.warning("storage unreachable: %s", exc)
                return error_response(503, "StorageUnavailable", "the app's storage account could not be reached",
                                      {"Retry-After": "30"})
            except AzureError:
                log.exception("storage error")
                return error_response(502, "StorageError", "the app's storage account answered with an error; "
                                      f"see the log of invocation {context.invocation_id}")
            except Exception:
                log.exception("unhandled error in %s", context.function_name)
                return error_response(500, "InternalError", "unexpected error; see the log of invocation "
                                      f"{context.invocation_id}")

    return wrapper
