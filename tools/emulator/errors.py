"""The Studio (classic) error envelope: `{"error": {"code", "message", "details": [{"code", "message"}]}}`.

Top-level codes and their HTTP statuses follow the reference's table; detail codes go in `details[].code`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

STATUS_BY_CODE = {
    "BadArgument": 400, "BadUserArgument": 400, "InvalidOperation": 400, "LibraryExecutionError": 400,
    "ModuleExecutionError": 400, "Unauthorized": 401, "NotFound": 404, "Conflict": 409, "RequestTimeout": 408,
    "TooManyRequests": 429, "InternalError": 500, "ServiceUnavailable": 503, "GatewayTimeout": 504,
}
DEFAULT_MESSAGES = {
    "BadArgument": "Invalid argument provided.",
    "BadUserArgument": "Invalid user argument provided.",
    "InvalidOperation": "The operation is not valid.",
    "Unauthorized": "Invalid credentials provided.",
    "NotFound": "The requested resource was not found.",
    "InternalError": "The server encountered an internal error.",
    "ServiceUnavailable": "Service is temporarily unavailable.",
    "TooManyRequests": "Too many requests.",
    "GatewayTimeout": "The backend timed out.",
}


class StudioError(Exception):
    """Raised by handlers; rendered as the error envelope with the code's HTTP status."""

    def __init__(self, code: str, detail_code: str | None = None, message: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        self.code = code
        self.detail_code = detail_code
        self.message = message or DEFAULT_MESSAGES.get(code, code)
        self.status = status or STATUS_BY_CODE.get(code, 400)
        self.headers = headers or {}
        super().__init__(f"{code}/{detail_code}: {self.message}")

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": DEFAULT_MESSAGES.get(self.code, self.message)}
        if self.detail_code:
            error["details"] = [{"code": self.detail_code, "message": self.message}]
        else:
            error["message"] = self.message
        return {"error": error}

    def response(self) -> web.Response:
        headers = {"x-ms-request-id": str(uuid.uuid4()), **self.headers}
        return web.Response(status=self.status, text=json.dumps(self.body()), content_type="application/json",
                            headers=headers)


def bad_argument(detail: str, message: str) -> StudioError:
    return StudioError("BadArgument", detail, message)


def not_found(detail: str, message: str) -> StudioError:
    return StudioError("NotFound", detail, message)


def unauthorized(detail: str) -> StudioError:
    return StudioError("Unauthorized", detail, "Invalid credentials provided.")


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except StudioError as exc:
        return exc.response()
    except web.HTTPNotFound:
        if request.path.startswith("/azureml/"):  # the Azure ML stand-in: ARM's envelope
            return web.json_response({"error": {"code": "InvalidResourceType", "message": f"No route for "
                                                f"{request.method} {request.path}.", "details": []}}, status=404)
        return StudioError("NotFound", "ResourceNotFound", f"No route for {request.method} {request.path}").response()
    except web.HTTPMethodNotAllowed:
        return StudioError("BadArgument", "MethodNotAllowed",
                           f"{request.method} is not allowed on {request.path}", status=405).response()
