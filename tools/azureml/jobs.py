"""Command jobs: PUT/GET `.../jobs/{id}`, GET `.../jobs`, POST `.../jobs/{id}/cancel` (mfe.json 2024-10-01), and
the runner: NotStarted -> Queued -> Preparing -> Running -> Finalizing -> Completed (or Failed; CancelRequested ->
Canceled), each step as long as the configured timing, RunStatusChanged on every change and RunCompleted at the
end. The job really trains: the `uri_file` input is read from storage and `training.train` writes the model and
its evaluation to the job's `model` and `evaluation` outputs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tools.azureml import arm, events, resources, storage, training
from tools.azureml.state import Job
from tools.azureml.workspace import BASE, aml_of, check_asset_name
from tools.emulator.learner import DataError

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

log = logging.getLogger("azureml.jobs")
routes = web.RouteTableDef()
JOB = BASE + "/jobs/{job}"
RTYPE = "workspaces/jobs"
TERMINAL = ("Completed", "Failed", "Canceled")
OUTPUT_TYPES = ("uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model", "triton_model")
ROLES = ("model", "evaluation")
MUTABLE = ("description", "tags", "properties", "displayName", "isArchived", "notificationSetting")


def job_of(request: web.Request) -> tuple[AzureML, Job]:
    aml = aml_of(request)
    name = request.match_info["job"]
    job = aml.store.state.jobs.get(name)
    if job is None:
        raise arm.not_found(f"workspaces/{aml.config.workspace_name}/jobs", name, aml.config.resource_group)
    return aml, job


def training_input(aml: AzureML, inputs: dict[str, Any]) -> str:
    files = {n: s for n, s in inputs.items() if isinstance(s, dict) and s.get("jobInputType") == "uri_file"}
    if len(files) != 1:
        raise arm.bad_argument("The job needs exactly one uri_file input: the training table (CSV).",
                               target="properties.inputs")
    name, spec = next(iter(files.items()))
    uri = spec.get("uri")
    if not isinstance(uri, str) or not uri:
        raise arm.bad_argument(f"inputs.{name}.uri is required.", target=f"properties.inputs.{name}")
    try:
        storage.resolve(aml, uri)
    except storage.UriError as exc:
        raise arm.bad_argument(f"inputs.{name}.uri: {exc}", target=f"properties.inputs.{name}") from None
    return uri


def _outputs(name: str, raw: Any) -> dict[str, Any]:
    outputs = dict(raw or {})
    for role in ROLES:
        outputs.setdefault(role, {"jobOutputType": "custom_model" if role == "model" else "uri_folder"})
    for out_name, spec in outputs.items():
        if not isinstance(spec, dict) or spec.get("jobOutputType") not in OUTPUT_TYPES:
            raise arm.bad_argument(f"outputs.{out_name}.jobOutputType must be one of {', '.join(OUTPUT_TYPES)}.",
                                   target=f"properties.outputs.{out_name}")
        if not spec.get("uri"):
            spec = {**spec, "uri": storage.datastore_uri(f"azureml/{name}/{out_name}/")}
        spec.setdefault("mode", "ReadWriteMount")
        outputs[out_name] = spec
    return outputs


@routes.get(BASE + "/jobs", name="azureml.list_jobs")
@arm.management(RTYPE)
async def list_jobs(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    return arm.json_response(resources.page([resources.job(aml, j) for j in aml.store.state.jobs.values()]))


@routes.get(JOB, name="azureml.get_job")
@arm.management(RTYPE)
async def get_job(request: web.Request) -> web.StreamResponse:
    aml, job = job_of(request)
    return arm.json_response(resources.job(aml, job))


@routes.put(JOB, name="azureml.put_job")
@arm.management(RTYPE)
async def put_job(request: web.Request) -> web.StreamResponse:
    aml = aml_of(request)
    name = request.match_info["job"]
    check_asset_name("Job", name)
    body = await arm.json_body(request)
    props = body.get("properties")
    if not isinstance(props, dict):
        raise arm.bad_argument("properties is required.", target="properties")
    existing = aml.store.state.jobs.get(name)
    if existing is not None:
        changed = [k for k, v in props.items() if k not in (*MUTABLE, "status", "outputs")
                   and existing.properties.get(k) != v]
        if changed:
            raise arm.bad_argument(f"Job '{name}' exists; {', '.join(changed)} cannot be changed.", target=changed[0])
        existing.properties.update({k: props[k] for k in MUTABLE if k in props})
        aml.store.mark_dirty()
        return arm.json_response(resources.job(aml, existing))
    if props.get("jobType") != "Command":
        raise arm.bad_argument("Only Command jobs (jobType Command) are run by this stand-in.",
                               target="properties.jobType")
    for required in ("command", "environmentId"):
        if not isinstance(props.get(required), str) or not props[required].strip():
            raise arm.bad_argument(f"properties.{required} is required.", target=f"properties.{required}")
    training_input(aml, props.get("inputs") or {})
    shown = {"experimentName": "Default", "displayName": name, "tags": {}, "properties": {}, "services": {},
             "computeId": None, "isArchived": False, **props, "outputs": _outputs(name, props.get("outputs"))}
    job = Job(name=name, properties=shown, next_at=time.time(), system_data=arm.system_data(request["claims"]))
    aml.store.state.jobs[name] = job
    aml.store.mark_dirty()
    return arm.json_response(resources.job(aml, job), 201)


@routes.post(JOB + "/cancel", name="azureml.cancel_job")
@arm.management(RTYPE)
async def cancel_job(request: web.Request) -> web.StreamResponse:
    aml, job = job_of(request)
    location = {"Location": aml.arm_url + aml.resource_id("jobs", job.name) + "?api-version="
                + request.query["api-version"]}
    if job.status in TERMINAL or job.status == "CancelRequested":
        return arm.empty_response(200, location)
    _move(aml, job, "CancelRequested", aml.config.timing.job_cancel)
    return arm.empty_response(202, location)


# ---- the runner ---------------------------------------------------------------------------------------------
NEXT = {"NotStarted": ("Queued", "job_queued"), "Queued": ("Preparing", "job_preparing"),
        "Preparing": ("Running", "job_running_min"), "Finalizing": ("Completed", None),
        "CancelRequested": ("Canceled", None)}


def _move(aml: AzureML, job: Job, status: str, seconds: float = 0.0) -> None:
    job.status, job.next_at = status, time.time() + seconds
    aml.store.mark_dirty()
    data = events.run_data(aml, job, status)
    events.publish(aml, "RunStatusChanged", events.run_subject(data), data)
    if status == "Completed":
        done = events.run_data(aml, job)
        events.publish(aml, "RunCompleted", events.run_subject(done), done)
    if status == "Running":
        aml.spawn(_train(aml, job))


async def tick(aml: AzureML) -> None:
    now = time.time()
    for job in list(aml.store.state.jobs.values()):
        if job.status in TERMINAL or now < job.next_at:
            continue
        if job.status == "Running":
            if job.training_done:
                _move(aml, job, "Finalizing", aml.config.timing.job_finalizing)
            continue
        status, timing = NEXT.get(job.status, ("Failed", None))
        _move(aml, job, status, getattr(aml.config.timing, timing) if timing else 0.0)


async def _train(aml: AzureML, job: Job) -> None:
    props = job.properties
    try:
        uri = training_input(aml, props.get("inputs") or {})
        data = await storage.read(aml, storage.resolve(aml, uri))
        literals = training.literal_inputs(props.get("inputs") or {})
        files = await asyncio.get_running_loop().run_in_executor(None, training.train, data, uri, literals,
                                                                 job.name)
        if job.status != "Running":
            return  # canceled meanwhile
        for relative, (content, content_type) in files.items():
            role, _, file = relative.partition("/")
            where = storage.resolve(aml, str(props["outputs"][role]["uri"])).child(file)
            await storage.write(aml, where, content, content_type)
        job.metrics = json.loads(files["evaluation/metrics.json"][0])["metrics"]
        job.training_done = True
    except (DataError, storage.UriError, arm.ArmError) as exc:
        _fail(aml, job, f"UserError: {exc}")
    except Exception as exc:
        log.exception("job %s failed", job.name)
        _fail(aml, job, f"SystemError: {type(exc).__name__}")


def _fail(aml: AzureML, job: Job, reason: str) -> None:
    if job.status != "Running":
        return
    job.failure = reason
    job.properties["properties"] = {**(job.properties.get("properties") or {}), "azureml.failureReason": reason}
    _move(aml, job, "Failed")
