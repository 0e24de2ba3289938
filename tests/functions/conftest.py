"""Fixtures for the entry-point and indexing tests: the app indexed once (a FunctionApp indexes once per process),
and the shared harness (real Azurite + emulator) behind the handlers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

from tests.conftest import leaked_secrets
from tools.devhost.indexing import FunctionSpec, index
from tools.devhost.invoke import DevContext

INDEX_ENV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RETRAIN_RECONCILE_SCHEDULE": "0 */5 * * * *"}


@pytest.fixture
def wire(harness, monkeypatch):
    """`wire(**settings)`: the blueprints backed by a harness library (its own tables, the shared emulator and
    Azurite), and `AzureWebJobsStorage` set for the blob binding. Returns the harness."""
    from blueprints import blob_triggers, http_api, runtime, timers

    def make(**overrides: str):
        h = harness(**{"RETRAIN_ENDPOINTS": "", **overrides})
        for module in (blob_triggers, timers, runtime):
            monkeypatch.setattr(module, "retraining", lambda h=h: h.app)
        monkeypatch.setattr(http_api, "retraining_for_http", lambda h=h: h.app)
        monkeypatch.setenv("AzureWebJobsStorage", h.settings.storage_connection_string.get_secret_value())
        return h

    return make


@pytest.fixture(scope="session")
def indexed() -> dict[str, FunctionSpec]:
    import function_app

    return {s.name: s for s in index(function_app.app, INDEX_ENV)}


class Answer:
    def __init__(self, resp: func.HttpResponse) -> None:
        self.status = resp.status_code
        self.headers = resp.headers
        self.text = resp.get_body().decode()
        assert resp.mimetype == "application/json", self.text
        self.json: Any = json.loads(self.text)
        assert not leaked_secrets(self.text), self.text

    @property
    def code(self) -> str:
        return str(self.json["error"]["code"])


def call_http(builder: Any, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
              route_params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Answer:
    """Call an HTTP function the way the worker does: a real HttpRequest and a context."""
    if isinstance(body, (dict, list)):
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    else:
        raw = body if isinstance(body, bytes) else (body or "").encode()
    req = func.HttpRequest(method, f"http://localhost:7071/api/{path}", headers=headers or {}, params=params or {},
                           route_params=route_params or {}, body=raw)
    user_function: Callable[..., func.HttpResponse] = builder.build().get_user_function()
    return Answer(user_function(req, context=DevContext(builder.build().get_function_name(), "/app")))
