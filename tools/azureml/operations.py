"""ARM long-running operations, as the Azure ML resource provider answers them (mfe.json 2024-10-01):

- PUT (create) answers 201 with the resource (`provisioningState` Creating/Updating) and `Azure-AsyncOperation`;
  PUT on an existing resource answers 200 with the same header while the update runs. Final state: the original URI.
- PATCH, DELETE and POST regenerateKeys answer 202 with `Location` (and here `Azure-AsyncOperation` too) and
  `Retry-After`; final state via Location. DELETE of a missing resource answers 204.
- The operation status resource (`.../locations/<loc>/mfeOperationsStatus/<id>`) answers
  `{id, name, status: InProgress|Succeeded|Failed|Canceled, startTime, endTime?, percentComplete, error?}`.
- The Location URL (`.../mfeOperationResults/<id>`) answers 202 (+ Retry-After) while in progress, then 200 with
  the resource (PATCH), 200 without a body (DELETE, regenerateKeys), or the operation's error with its status.

One mutating operation at a time per endpoint: the endpoint records the operation holding it; another mutating
request on the endpoint or its deployments answers 409 Conflict until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tools.azureml import arm, resources
from tools.azureml.config import API_VERSION, PROVIDER
from tools.azureml.state import Endpoint, Operation
from tools.azureml.workspace import AZUREML

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

log = logging.getLogger("azureml.operations")
Finisher = Callable[["AzureML", Operation], Awaitable[None]]
FINISHERS: dict[str, Finisher] = {}
TERMINAL = ("Succeeded", "Failed", "Canceled")


def finisher(kind: str) -> Callable[[Finisher], Finisher]:
    def register(fn: Finisher) -> Finisher:
        FINISHERS[kind] = fn
        return fn

    return register


def _base(aml: AzureML) -> str:
    return f"{aml.arm_url}/subscriptions/{aml.config.subscription_id}/providers/{PROVIDER}/locations/" \
           f"{aml.config.location}"


def status_url(aml: AzureML, op: Operation) -> str:
    return f"{_base(aml)}/mfeOperationsStatus/{op.id}?api-version={API_VERSION}"


def result_url(aml: AzureML, op: Operation) -> str:
    return f"{_base(aml)}/mfeOperationResults/{op.id}?api-version={API_VERSION}"


def lro_headers(aml: AzureML, op: Operation, location: bool) -> dict[str, str]:
    headers = {"Azure-AsyncOperation": status_url(aml, op), "x-ms-async-operation-timeout": "P1D",
               "Retry-After": str(aml.config.timing.retry_after)}
    if location:
        headers["Location"] = result_url(aml, op)
    return headers


def hold(aml: AzureML, ep: Endpoint, doing: str) -> None:
    """Refuse a second mutating operation on an endpoint while one is in progress (409 Conflict)."""
    current = aml.store.state.operations.get(ep.operation or "")
    if current is not None and current.status == "InProgress":
        raise arm.conflict(f"Cannot {doing} because endpoint '{ep.name}' is in {ep.provisioning_state} "
                           f"provisioning state: operation {current.id} ({current.kind}) is in progress. Retry "
                           f"when it has completed.")


def begin(aml: AzureML, kind: str, ep: Endpoint, seconds: float, deployment: str | None = None,
          payload: dict[str, Any] | None = None, result: str = "resource") -> Operation:
    op = Operation(id=str(uuid.uuid4()), kind=kind, endpoint=ep.name, deployment=deployment,
                   start_time=arm.now_iso(), due=time.time() + seconds, payload=payload or {}, result=result)
    aml.store.state.operations[op.id] = op
    ep.operation = op.id
    aml.store.mark_dirty()
    return op


def fail(op: Operation, code: str, message: str, status: int = 400) -> None:
    op.status, op.error, op.error_status = "Failed", {"code": code, "message": message}, status


async def tick(aml: AzureML) -> None:
    """Finish every operation whose time has come."""
    now = time.time()
    for op in [o for o in aml.store.state.operations.values() if o.status == "InProgress" and o.due <= now]:
        try:
            await FINISHERS[op.kind](aml, op)
            if op.status == "InProgress":
                if op.due > time.time():
                    continue  # postponed (a deployment held in Creating by a fault rule)
                op.status = "Succeeded"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not wedge the endpoint: the operation fails
            log.exception("operation %s (%s) failed", op.id, op.kind)
            fail(op, "InternalServerError", f"The operation failed: {type(exc).__name__}", 500)
        op.end_time = arm.now_iso()
        ep = aml.store.state.endpoints.get(op.endpoint)
        if ep is not None and ep.operation == op.id:
            ep.operation = None
            if ep.provisioning_state in ("Creating", "Updating"):
                ep.provisioning_state = "Failed" if op.kind == "endpoint.create" and op.status == "Failed" \
                    else "Succeeded"
        aml.store.mark_dirty()


def _operation(request: web.Request) -> tuple[AzureML, Operation]:
    aml = request.app[AZUREML]
    op = aml.store.state.operations.get(request.match_info["op"])
    if op is None or request.match_info["sub"] != aml.config.subscription_id:
        raise arm.ArmError(404, "ResourceNotFound", f"Operation '{request.match_info['op']}' was not found.")
    return aml, op


routes = web.RouteTableDef()
OPS = "/azureml/subscriptions/{sub}/providers/" + PROVIDER + "/locations/{loc}"


@routes.get(OPS + "/mfeOperationsStatus/{op}", name="azureml.operation_status")
@arm.management("locations/mfeOperationsStatus")
async def operation_status(request: web.Request) -> web.StreamResponse:
    aml, op = _operation(request)
    body: dict[str, Any] = {"id": status_url(aml, op).split("?")[0].removeprefix(aml.arm_url), "name": op.id,
                            "status": op.status, "startTime": op.start_time}
    if op.status in TERMINAL:
        body["endTime"] = op.end_time
        body["percentComplete"] = 100.0
    else:
        total = max(op.due - time.time(), 0.0)
        body["percentComplete"] = 0.0 if total > 0 else 99.0
    if op.error:
        body["error"] = {**op.error, "details": [], "additionalInfo": []}
    headers = {} if op.status in TERMINAL else {"Retry-After": str(aml.config.timing.retry_after)}
    return arm.json_response(body, headers=headers)


@routes.get(OPS + "/mfeOperationResults/{op}", name="azureml.operation_result")
@arm.management("locations/mfeOperationResults")
async def operation_result(request: web.Request) -> web.StreamResponse:
    aml, op = _operation(request)
    if op.status == "InProgress":
        return arm.empty_response(202, {"Location": result_url(aml, op),
                                        "Retry-After": str(aml.config.timing.retry_after)})
    if op.status == "Failed" and op.error:
        raise arm.ArmError(op.error_status, op.error["code"], op.error["message"])
    if op.status == "Canceled":
        raise arm.ArmError(409, "OperationCanceled", f"Operation {op.id} was canceled.")
    if op.result == "resource":
        state = aml.store.state
        if op.deployment is not None:
            dep = state.deployments.get(f"{op.endpoint}/{op.deployment}")
            if dep is not None:
                return arm.json_response(resources.deployment(aml, dep))
        elif op.endpoint in state.endpoints:
            return arm.json_response(resources.endpoint(aml, state.endpoints[op.endpoint]))
    return arm.empty_response(200)
