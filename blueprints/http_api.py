"""The operator's HTTP API: health, endpoints (add, list, show, patch a model, roll back), retrain, runs. Each
handler parses, calls a use case, and answers JSON; errors are mapped in `http_support.api`."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import azure.functions as func

from blueprints.http_support import JSON, ApiError, api, content_type, json_response, parse_body, parse_query
from blueprints.principal import caller, operator
from blueprints.runtime import retraining_for_http
from shared.decisions import ACTIVE_RUN_STATUSES, HANDED_OFF, find_target, model_refused
from shared.errors import Refused
from shared.http_bodies import (
    CreateEndpoint,
    Decision,
    EndpointQuery,
    NoQuery,
    PatchModel,
    RetrainFromBlob,
    Rollback,
    RunsQuery,
    TargetQuery,
    UploadQuery,
)
from shared.records import EndpointResult, Run
from shared.usecases.views import run_view

bp = func.Blueprint()
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")
RETRAIN_TAKES = f"a blob reference as {JSON}, or a CSV upload as text/csv"


@bp.function_name("health")
@bp.route(route="health", methods=["GET"])
@api
def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    parse_query(req, NoQuery)
    report = retraining_for_http().views.health()
    return json_response(report, 200 if report["status"] == "ok" else 503)


@bp.function_name("endpoints_create")
@bp.route(route="endpoints", methods=["POST"])
@api
def endpoints_create(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    parse_query(req, NoQuery)
    body = parse_body(req, CreateEndpoint)
    app = retraining_for_http()
    operator(req, app.settings)
    target = find_target(app.settings, body.target)
    if body.name == app.services.serving(target).protected_endpoint():  # refused before anything is written
        raise Refused(f"'{body.name}' is the default endpoint: it exists already, follows the experiment and is "
                      "never changed by this app", "DefaultEndpoint", conflict=True)
    ep = app.operations.add_endpoint(body.name, body.description, body.target, {
        "throttle_level": body.throttle_level, "max_concurrent_calls": body.max_concurrent_calls})
    return json_response(app.views.endpoint(body.target, body.name, ep), 201,
                         {"Location": f"/api/endpoints/{body.name}"})


@bp.function_name("endpoints_list")
@bp.route(route="endpoints", methods=["GET"])
@api
def endpoints_list(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    query = parse_query(req, TargetQuery)
    return json_response({"endpoints": retraining_for_http().views.endpoints(query.target)})


@bp.function_name("endpoints_get")
@bp.route(route="endpoints/{name}", methods=["GET"])
@api
def endpoints_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    query = parse_query(req, EndpointQuery)
    return json_response(retraining_for_http().views.endpoint(query.target, req.route_params["name"],
                                                              history_limit=query.history_limit,
                                                              before=query.before))


@bp.function_name("endpoints_patch_model")
@bp.route(route="endpoints/{name}/model", methods=["POST"])
@api
def endpoints_patch_model(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    parse_query(req, NoQuery)
    body = parse_body(req, PatchModel)
    app = retraining_for_http()
    result = app.operations.patch_model(body.target, req.route_params["name"], body.model, force=body.force,
                                        caller=operator(req, app.settings))
    return _deployment_answer(result)


@bp.function_name("endpoints_rollback")
@bp.route(route="endpoints/{name}/rollback", methods=["POST"])
@api
def endpoints_rollback(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    parse_query(req, NoQuery)
    body = parse_body(req, Rollback) if req.get_body() else Rollback()
    app = retraining_for_http()
    result = app.operations.rollback(body.target, req.route_params["name"], body.to,
                                     caller=operator(req, app.settings))
    return _deployment_answer(result)


@bp.function_name("retrain")
@bp.route(route="retrain", methods=["POST"])
@api
def retrain(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    app = retraining_for_http()
    run: Run | None
    if content_type(req) in CSV_TYPES:
        query = parse_query(req, UploadQuery)
        data = req.get_body() or b""
        limit = app.settings.max_upload_bytes
        if len(data) > limit:
            raise ApiError(413, "PayloadTooLarge", f"the CSV is {len(data)} bytes; the limit for an upload is "
                           f"{limit} (RETRAIN_MAX_UPLOAD_BYTES): put larger files into the container instead")
        if not data:
            raise ApiError(400, "EmptyBody", "the CSV body is empty")
        if query.dry_run == "true":
            return json_response(app.dry_run.of_upload(query.name or _upload_name(), data, query.endpoints))
        run = app.intake.from_upload(query.name or _upload_name(), data, endpoints=query.endpoints,
                                     caller=caller(req))
    else:
        if content_type(req) not in ("", JSON):
            raise ApiError(415, "UnsupportedMediaType", f"POST /api/retrain takes {RETRAIN_TAKES}; not "
                           f"{content_type(req)}")
        body = parse_body(req, RetrainFromBlob, other="to upload a CSV, send it as text/csv")
        parse_query(req, NoQuery, other="with a JSON body, dryRun goes in the body")
        if body.dry_run:
            return json_response(app.dry_run.of_blob(body.blob))
        run = app.intake.from_blob(body.blob)
    if run is None:
        raise ApiError(404, "NotFound", "the training data disappeared before it could be read")
    view = run_view(run)
    if run.status == "Rejected":
        raise ApiError(422, "TrainingDataRejected", run.error or "the training data was rejected", run=view)
    if run.status == "Failed":
        raise ApiError(502, "JobFailed", run.error or "the training job could not be started", run=view)
    status = 202 if run.status in ACTIVE_RUN_STATUSES else 200
    return json_response(view, status, {"Location": f"/api/runs/{run.id}"})


@bp.function_name("runs_list")
@bp.route(route="runs", methods=["GET"])
@api
def runs_list(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    query = parse_query(req, RunsQuery)
    statuses = tuple(s for s in (query.status or "").split(",") if s)
    runs = retraining_for_http().views.runs(statuses or None, query.limit)
    return json_response({"runs": [run_view(r) for r in runs]})


@bp.function_name("runs_get")
@bp.route(route="runs/{id}", methods=["GET"])
@api
def runs_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    parse_query(req, NoQuery)
    return json_response(run_view(retraining_for_http().views.run(req.route_params["id"])))


@bp.function_name("status")
@bp.route(route="status", methods=["GET"])
@api
def status(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The status page (HTML, no external assets, no JavaScript)."""
    parse_query(req, NoQuery)
    return func.HttpResponse(retraining_for_http().status.html(), mimetype="text/html", charset="utf-8")


@bp.function_name("runs_approve")
@bp.route(route="runs/{id}/approve", methods=["POST"])
@api
def runs_approve(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    parse_query(req, NoQuery)
    app = retraining_for_http()
    return _approval_answer(app.approvals.approve(req.route_params["id"], operator(req, app.settings)))


@bp.function_name("runs_reject")
@bp.route(route="runs/{id}/reject", methods=["POST"])
@api
def runs_reject(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    parse_query(req, NoQuery)
    body = parse_body(req, Decision) if req.get_body() else Decision()
    app = retraining_for_http()
    return json_response(run_view(app.approvals.reject(req.route_params["id"], operator(req, app.settings),
                                                       body.reason)))


APPROVAL_ENDINGS = {  # how an approved run ended -> (status, code): the run is in the error's body
    "Superseded": (409, "Superseded"), "Cancelled": (409, "Cancelled"), "BelowGate": (409, "BelowGate"),
    "Rejected": (409, "Rejected"), "RolledBack": (422, "ModelNotServable"),
    "PartiallyDeployed": (502, "PartiallyDeployed"), "Failed": (502, "DeploymentFailed"),
}


def _approval_answer(run: Run) -> func.HttpResponse:
    """An approval's answer fits how the deployment it started went: 200 Deployed, 202 while it goes on (the run
    at Location), otherwise an error with the run."""
    view = run_view(run)
    if run.status == "Deployed":
        return json_response(view)
    if run.status in ACTIVE_RUN_STATUSES:
        return json_response(view, 202, {"Location": f"/api/runs/{run.id}"})
    status, code = APPROVAL_ENDINGS.get(run.status, (502, "DeploymentFailed"))
    raise ApiError(status, code, run.error or f"the approved run ended {run.status}", run=view)


def _deployment_answer(result: EndpointResult) -> func.HttpResponse:
    view = result.view()
    if result.outcome in ("Deployed", "Unchanged"):
        return json_response(view)
    if result.outcome == "Pending" and result.reason == HANDED_OFF:  # on the work queue: the run says how it ends
        run_id = (result.deployment_id or "").removeprefix("run-")
        return json_response({**view, "runId": run_id}, 202, {"Location": f"/api/runs/{run_id}"})
    if result.outcome == "Pending":
        raise ApiError(503, "DeploymentPending", result.reason or "the deployment could not be finished now; the "
                       "previous model serves", {"Retry-After": "30"}, result=view)
    if result.outcome == "Superseded":
        raise ApiError(409, "Superseded", result.reason or "a model from newer data serves this endpoint",
                       result=view)
    if model_refused(result):
        raise ApiError(422, "ModelNotServable", result.reason or "the endpoint could not serve the model; it "
                       "was rolled back to its last good model", result=view)
    raise ApiError(502, "DeploymentFailed", result.reason or f"the deployment ended {result.outcome}", result=view)


def _upload_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"upload-{stamp}-{secrets.token_hex(3)}.csv"

