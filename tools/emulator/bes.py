"""The Batch Execution Service (BES) of every endpoint: submit, start, get (poll) and delete (cancel) jobs.

A job on the training web service reads `input1` from storage, trains the learner on a held-out split, and
writes the trained model (`output1`, `.ilearner`, a JSON model document) and Studio's Evaluate Model results
(`output2`, CSV). A job on the predictive web service scores `input1` with the endpoint's active model into
`output1`. Jobs run in the background, at most `max_concurrent_jobs` at a time (the rest wait their turn, FIFO).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from azure.core.exceptions import AzureError, ResourceNotFoundError

from tools.emulator import census_schema as schema
from tools.emulator.blobs import BlobFetchError, StorageAccount
from tools.emulator.context import (
    Emulator,
    check_api_version,
    emulator,
    json_body,
    json_response,
    lookup_endpoint_by_guid,
)
from tools.emulator.errors import StudioError, bad_argument, not_found
from tools.emulator.learner import EVALUATION_COLUMNS, DataError, ModelError, format_metric, train_and_evaluate
from tools.emulator.state import EndpointState, JobState, ServiceState, now_iso
from tools.emulator.tables import DATASET_EXTENSIONS, read_table, write_table

log = logging.getLogger("emulator.bes")
routes = web.RouteTableDef()
BASE = "/workspaces/{ws}/services/{guid}/jobs"

# What each kind of web service declares: inputs, outputs (with allowed extensions) and global parameters.
INPUTS = {"training": ["input1"], "predictive": ["input1"]}
OUTPUTS: dict[str, dict[str, tuple[str, ...]]] = {"training": {"output1": (".ilearner",), "output2": (".csv", ".tsv")},
           "predictive": {"output1": (".csv", ".tsv")}}
DEFAULT_OUTPUT_EXT = {"output1": {"training": ".ilearner", "predictive": ".csv"}, "output2": {"training": ".csv"}}
PARAMETERS: dict[str, dict[str, tuple[type, float, float, str]]] = {
    "training": {"Random seed": (int, 0, 2**31 - 1, "0"), "Test fraction": (float, 0.05, 0.9, "0.25")},
    "predictive": {},
}


# ---- submit ---------------------------------------------------------------------------------------------------
def _reference(name: str, raw: object, kind: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """Validate one AzureBlobDataReference; return the parts the job needs."""
    if not isinstance(raw, dict):
        raise bad_argument("RequestBodyInvalid", f"{kind} '{name}' must be an object (AzureBlobDataReference).")
    rel = raw.get("RelativeLocation")
    if not isinstance(rel, str) or "/" not in rel.strip("/"):
        raise bad_argument("InvalidBlob", f"{kind} '{name}': RelativeLocation must be '<container>/<blob>'.")
    rel = rel.lstrip("/")
    if not rel.lower().endswith(allowed):
        raise bad_argument("InvalidBlobExtension", f"The blob reference: {rel} has an invalid or missing file "
                                                   f"extension. Supported for {name}: {', '.join(allowed)}.")
    conn = raw.get("ConnectionString")
    if isinstance(conn, str) and conn.strip():
        try:
            StorageAccount.parse(conn)
        except ValueError as exc:
            raise bad_argument("InvalidBlobConnectionString", f"{kind} '{name}': the connection string is not "
                                                              f"valid ({exc}).") from None
        return {"connection_string": conn.strip(), "relative": rel}
    base, sas = raw.get("BaseLocation"), raw.get("SasBlobToken")
    if isinstance(base, str) and base.strip() and isinstance(sas, str) and sas.strip():
        return {"base": base.strip(), "sas": sas.strip(), "relative": rel}
    raise bad_argument("InvalidBlobConnectionString", f"{kind} '{name}' needs a ConnectionString, or a "
                                                      "BaseLocation with a SasBlobToken.")


def _parameters(kind: str, raw: object) -> dict[str, str]:
    declared = PARAMETERS[kind]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise bad_argument("RequestBodyInvalid", "GlobalParameters must be an object of name -> value.")
    values = {name: default for name, (_, _, _, default) in declared.items()}
    for name, value in raw.items():
        if name not in declared:
            raise StudioError("BadUserArgument", "UnexpectedParameter",
                              f"'{name}' is not a parameter of this web service (names are case-sensitive); "
                              f"known: {', '.join(declared) or 'none'}.")
        typ, low, high, _ = declared[name]
        try:
            number = typ(str(value))
        except ValueError:
            raise StudioError("BadUserArgument", "UserParameterInvalid",
                              f"Parameter '{name}': '{value}' is not a valid {typ.__name__}.") from None
        if not low <= number <= high:
            raise StudioError("BadUserArgument", "UserParameterInvalid",
                              f"Parameter '{name}' must be between {low} and {high}.")
        values[name] = str(value)
    return values


def normalise_submission(kind: str, body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_argument("RequestBodyInvalid", "The job request must be a JSON object.")
    inputs, legacy = body.get("Inputs"), body.get("Input")
    if inputs and legacy:
        raise bad_argument("BatchJobInputsTooManySpecified", "Specify either Inputs or the legacy Input, not both.")
    if legacy:
        inputs = {INPUTS[kind][0]: legacy}
    if not inputs:
        raise bad_argument("BatchJobInputsNotSpecified", "The job request has no inputs; this web service needs "
                                                         f"{', '.join(INPUTS[kind])}.")
    if not isinstance(inputs, dict):
        raise bad_argument("RequestBodyInvalid", "Inputs must be an object of input name -> blob reference.")
    if len(inputs) > len(INPUTS[kind]):
        raise bad_argument("BatchJobInputsTooManySpecified", f"This web service takes {len(INPUTS[kind])} input(s).")
    unknown = [n for n in inputs if n not in INPUTS[kind]]
    if unknown:
        raise bad_argument("InvalidInputNames", f"Input name(s) {', '.join(unknown)} do not match the web "
                                                f"service inputs ({', '.join(INPUTS[kind])}).")
    outputs = body.get("Outputs") or {}
    if not isinstance(outputs, dict):
        raise bad_argument("RequestBodyInvalid", "Outputs must be an object of output name -> blob reference.")
    declared = OUTPUTS[kind]
    for name in outputs:
        if name not in declared:
            raise bad_argument("InvalidOutputOverrideName", f"Invalid output override name '{name}': the web "
                                                            f"service outputs are {', '.join(declared)}.")
    return {
        "inputs": {n: _reference(n, v, "Input", DATASET_EXTENSIONS) for n, v in inputs.items()},
        "outputs": {n: _reference(n, v, "Output", declared[n]) for n, v in outputs.items() if v is not None},
        "parameters": _parameters(kind, body.get("GlobalParameters")),
        "batch_pool": body.get("AzureBatchPoolId"),
    }


@routes.post(BASE, name="bes.submit")
async def submit_job(request: web.Request) -> web.Response:
    check_api_version(request)
    svc, ep = lookup_endpoint_by_guid(request)
    emu = emulator(request)
    normalised = normalise_submission(svc.kind, await json_body(request))
    job = JobState(service_id=svc.id, endpoint=ep.name, request=normalised)
    emu.store.ws.jobs[job.id] = job
    emu.store.mark_dirty()
    return json_response(job.id)


def _job(request: web.Request) -> tuple[Emulator, ServiceState, EndpointState, JobState]:
    check_api_version(request)
    svc, ep = lookup_endpoint_by_guid(request)
    emu = emulator(request)
    job = emu.store.ws.jobs.get(request.match_info["job"])
    if job is None or job.service_id != svc.id or job.endpoint != ep.name:
        raise not_found("JobNotFound", f"Job {request.match_info['job']} was not found on this endpoint.")
    return emu, svc, ep, job


@routes.post(BASE + "/{job}/start", name="bes.start")
async def start_job(request: web.Request) -> web.Response:
    emu, _, _, job = _job(request)
    if job.status != "NotStarted":
        raise StudioError("InvalidOperation", "CannotStartJob",
                          f"The job cannot be started because it is in {job.status} state.")
    job.status, job.started = "Running", now_iso()
    emu.store.mark_dirty()
    request.app[RUNNER].schedule(job)
    return web.Response(status=204)


def _results(emu: Emulator, job: JobState) -> dict[str, Any] | None:
    if job.status != "Finished" or not job.results:
        return None
    out: dict[str, Any] = {}
    for name, ref in job.results.items():
        if "connection_string" in ref:
            account = StorageAccount.parse(ref["connection_string"])
            base, token = account.base_location, account.read_sas(ref["relative"], emu.result_sas_lifetime)
        else:  # written through a caller's SAS: hand back that location
            base, token = ref["base"], ref["sas"]
        out[name] = {"ConnectionString": None, "RelativeLocation": ref["relative"], "BaseLocation": base,
                     "SasBlobToken": token}
    return out


@routes.get(BASE + "/{job}", name="bes.get")
async def get_job(request: web.Request) -> web.Response:
    emu, _, _, job = _job(request)
    return json_response({"StatusCode": job.status, "Results": _results(emu, job), "Details": job.details})


@routes.delete(BASE + "/{job}", name="bes.delete")
async def delete_job(request: web.Request) -> web.Response:
    emu, _, _, job = _job(request)
    if job.status in ("NotStarted", "Running"):
        job.status, job.ended = "Cancelled", now_iso()
        request.app[RUNNER].cancel(job.id)
        emu.store.mark_dirty()
    return web.Response(status=204)


# ---- the runner ---------------------------------------------------------------------------------------------
class JobFailed(Exception):
    """The job fails with this text as its Details."""


class JobRunner:
    """Runs started jobs in the background, at most `max_concurrent_jobs` at a time."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self._slots = asyncio.Semaphore(emu.config.max_concurrent_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def schedule(self, job: JobState) -> None:
        self._tasks[job.id] = asyncio.get_running_loop().create_task(self._run(job), name=f"job-{job.id}")

    def resume(self) -> None:
        """After a restart: jobs that were running start over."""
        for job in self.emu.store.ws.jobs.values():
            if job.status == "Running":
                self.schedule(job)

    def cancel(self, job_id: str) -> None:
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, job: JobState) -> None:
        started = time.monotonic()
        try:
            async with self._slots:
                outputs = await self._execute(job)
                left = self.emu.config.job_seconds - (time.monotonic() - started)
                if left > 0:
                    await asyncio.sleep(left)
                if job.status != "Running":
                    return
                job.results = await self._write_outputs(job, outputs)
                job.status = "Finished"
        except JobFailed as exc:
            job.status, job.details = "Failed", str(exc)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            job.status, job.details = "Failed", f"InternalError: {type(exc).__name__}"
        finally:
            self._tasks.pop(job.id, None)
            if job.status in ("Finished", "Failed") and job.ended is None:
                job.ended = now_iso()
            self.emu.store.mark_dirty()

    async def _read_input(self, ref: dict[str, str]) -> bytes:
        try:
            if "connection_string" in ref:
                return await self.emu.blobs.read(ref["connection_string"], ref["relative"])
            url = ref["base"].rstrip("/") + "/" + ref["relative"] + ("" if ref["sas"].startswith("?") else "?") \
                + ref["sas"]
            return await self.emu.fetcher.fetch(url, ref["sas"])
        except (ResourceNotFoundError, BlobFetchError) as exc:
            raise JobFailed(f"BlobNotFound: the input blob {ref['relative']} could not be read "
                            f"({type(exc).__name__}).") from None
        except AzureError as exc:
            raise JobFailed(f"InvalidBlob: the input blob {ref['relative']} could not be read "
                            f"({type(exc).__name__}).") from None

    async def _execute(self, job: JobState) -> dict[str, tuple[bytes, str]]:
        svc = self.emu.store.service(job.service_id)
        if svc is None:
            raise JobFailed("WebServiceNotFound: the web service of this job was deleted.")
        ref = job.request["inputs"]["input1"]
        data = await self._read_input(ref)
        loop = asyncio.get_running_loop()
        try:
            if svc.kind == "training":
                params = job.request["parameters"]
                return await loop.run_in_executor(None, _train, data, ref["relative"], int(params["Random seed"]),
                                                  float(params["Test fraction"]))
            ep = svc.endpoints.get(job.endpoint)
            sha = self.emu.store.active_model_sha(ep, time.time()) if ep else None
            if sha is None:
                raise JobFailed("ResourceLoadFailed: the endpoint has no trained model.")
            model = self.emu.store.model(sha)
            return await loop.run_in_executor(None, _score_file, model, data, ref["relative"])
        except (DataError, ModelError) as exc:
            raise JobFailed(f"ModuleExecutionError: Module execution encountered an error. {exc}") from None

    async def _write_outputs(self, job: JobState, outputs: dict[str, tuple[bytes, str]]) -> dict[str, dict[str, str]]:
        svc = self.emu.store.service(job.service_id)
        kind = svc.kind if svc else "training"
        results: dict[str, dict[str, str]] = {}
        for name, (data, content_type) in outputs.items():
            ref = job.request["outputs"].get(name)
            if ref is None:  # not overridden: workspace storage under a generated name
                ext = DEFAULT_OUTPUT_EXT[name][kind]
                ref = {"connection_string": self.emu.config.storage_connection_string,
                       "relative": f"experimentoutput/{job.id}/{name}{ext}"}
            try:
                if "connection_string" in ref:
                    await self.emu.blobs.write(ref["connection_string"], ref["relative"], data, content_type)
                else:
                    await self._write_via_sas(ref, data, content_type)
            except (AzureError, OSError) as exc:
                raise JobFailed(f"InvalidBlob: output {name} could not be written to {ref['relative']} "
                                f"({type(exc).__name__}).") from None
            results[name] = ref
        return results

    async def _write_via_sas(self, ref: dict[str, str], data: bytes, content_type: str) -> None:
        from azure.storage.blob import ContentSettings
        from azure.storage.blob.aio import BlobClient

        token = ref["sas"] if ref["sas"].startswith("?") else "?" + ref["sas"]
        url = ref["base"].rstrip("/") + "/" + ref["relative"] + token
        async with BlobClient.from_blob_url(url) as client:
            await client.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))


def _train(data: bytes, name: str, seed: int, test_fraction: float) -> dict[str, tuple[bytes, str]]:
    _header, columns = read_table(data, name)
    missing = [c for c in schema.COLUMNS if c not in columns]
    if missing:
        raise DataError(f"Error 0001: Column(s) {', '.join(repr(c) for c in missing)} not found in {name} "
                        f"(line 1). The training experiment expects the Adult census schema.")
    model, metrics = train_and_evaluate({c: columns[c] for c in schema.FEATURES}, columns[schema.LABEL],
                                        test_fraction=test_fraction, seed=seed)
    document = dict(model.document)
    document["trainedOn"] = name
    evaluation = write_table(EVALUATION_COLUMNS, [[format_metric(metrics[c]) for c in EVALUATION_COLUMNS]],
                             "evaluation.csv")
    return {"output1": (json.dumps(document).encode(), "application/octet-stream"),
            "output2": (evaluation, "text/csv")}


def _score_file(model: Any, data: bytes, name: str) -> dict[str, tuple[bytes, str]]:
    header, columns = read_table(data, name)
    n = len(next(iter(columns.values()), []))
    proba = model.predict_proba(columns, n)
    labels = model.label(proba)
    rows = [[columns[h][i] for h in header] + [labels[i], repr(float(proba[i]))] for i in range(n)]
    return {"output1": (write_table(header + ["Scored Labels", "Scored Probabilities"], rows, "scores.csv"),
                        "text/csv")}


RUNNER: web.AppKey[JobRunner] = web.AppKey("job_runner", JobRunner)


@routes.get("/admin/jobs", name="admin.jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """Emulator-only: every job with its status and input (no connection strings), for tests and operators."""
    jobs = emulator(request).store.ws.jobs.values()
    return json_response([{"id": j.id, "status": j.status, "endpoint": j.endpoint, "created": j.created,
                           "ended": j.ended, "input": j.request["inputs"]["input1"]["relative"],
                           "details": j.details} for j in jobs])
