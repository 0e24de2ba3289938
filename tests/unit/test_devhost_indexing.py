"""devhost refuses what the Functions host or the Python worker would refuse, with a message naming the function."""

from __future__ import annotations

import azure.functions as func
import pytest

from tools.devhost.indexing import IndexingError, blob_pattern_regex, index, resolve_setting_refs
from tools.devhost.timers import parse_schedule

ENV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "SCHEDULE": "*/5 * * * * *"}


def make_app() -> func.FunctionApp:
    return func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def test_an_app_without_functions_is_refused():
    with pytest.raises(IndexingError, match="0 functions loaded"):
        index(make_app(), ENV)


def test_a_parameter_without_a_binding_is_refused():
    app = make_app()

    @app.route(route="x")
    def x(req: func.HttpRequest, extra: str) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(IndexingError, match=r"x: .*extra"):
        index(app, ENV)


def test_a_missing_connection_setting_is_refused():
    app = make_app()

    @app.blob_trigger(arg_name="b", path="c/{name}", connection="OTHER_STORAGE")
    def b(b: func.InputStream) -> None:
        return None

    with pytest.raises(IndexingError, match="OTHER_STORAGE"):
        index(app, ENV)


def test_an_unresolved_setting_in_a_schedule_is_refused_and_a_resolved_one_is_used():
    app = make_app()

    @app.timer_trigger(arg_name="t", schedule="%SCHEDULE%")
    def t(t: func.TimerRequest) -> None:
        return None

    assert index(app, ENV)[0].schedule == "*/5 * * * * *"
    app2 = make_app()

    @app2.timer_trigger(arg_name="t", schedule="%NOPE%")
    def t2(t: func.TimerRequest) -> None:
        return None

    with pytest.raises(IndexingError, match="'%NOPE%' does not resolve"):
        index(app2, ENV)


def test_two_functions_on_one_route_and_method_are_refused():
    app = make_app()

    @app.route(route="same", methods=["GET"])
    def one(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    @app.route(route="same", methods=["GET"])
    def two(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(IndexingError, match="already taken by one"):
        index(app, ENV)


def test_two_functions_with_one_name_are_refused():
    app = make_app()

    @app.function_name("dup")
    @app.route(route="a")
    def a(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    @app.function_name("dup")
    @app.route(route="b")
    def b(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(IndexingError, match="unique"):
        index(app, ENV)


def test_an_unsupported_trigger_is_refused_with_a_pointer_to_core_tools():
    app = make_app()

    @app.service_bus_queue_trigger(arg_name="m", queue_name="q", connection="ServiceBus")
    def q(m: func.ServiceBusMessage) -> None:
        return None

    with pytest.raises(IndexingError, match="func start"):
        index(app, ENV)


def test_a_queue_trigger_indexes_with_its_queue_and_needs_its_connection():
    def queue_app() -> func.FunctionApp:
        app = make_app()

        @app.queue_trigger(arg_name="m", queue_name="%WORK%", connection="AzureWebJobsStorage")
        def q(m: func.QueueMessage) -> None:
            return None

        return app

    (spec,) = index(queue_app(), {**ENV, "WORK": "Retrain-Work"})
    assert spec.trigger_type == "queueTrigger" and spec.queue_name == "retrain-work"
    with pytest.raises(IndexingError, match="connection 'AzureWebJobsStorage' does not exist"):
        index(queue_app(), {"WORK": "w1q"})


def test_ncrontab_needs_six_fields_and_timespans_work():
    with pytest.raises(ValueError, match="6 fields"):
        parse_schedule("*/5 * * * *")
    with pytest.raises(ValueError):
        parse_schedule("99 * * * * *")
    from datetime import UTC, datetime

    start = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert parse_schedule("0 */5 * * * *").next_after(start) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert parse_schedule("00:00:30").next_after(start) == datetime(2026, 1, 1, 0, 0, 31, tzinfo=UTC)


def test_blob_patterns_and_setting_references():
    whole = blob_pattern_regex("{name}").match("tenant/x.csv")
    assert whole is not None and whole.group("name") == "tenant/x.csv"
    stem = blob_pattern_regex("in/{stem}.csv").match("in/a.csv")
    assert stem is not None and stem.group("stem") == "a"
    assert blob_pattern_regex("in/{stem}.csv").match("out/a.csv") is None
    assert resolve_setting_refs("%A%/{name}", {"A": "box"}, "f") == "box/{name}"
