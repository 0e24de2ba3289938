"""Stand-in-only routes under /admin/azureml (never faulted): deployment faults, the routing seed and what each
deployment served, and a job's metrics as the trainer computed them."""

from __future__ import annotations

from aiohttp import web

from tools.azureml.faults import DeploymentFault
from tools.azureml.workspace import AZUREML
from tools.emulator.faults import rule_list_routes

routes = web.RouteTableDef()
rule_list_routes(routes, "/admin/azureml/deployment-faults", "admin.azureml.faults", DeploymentFault,
                 lambda app: app[AZUREML].faults)


@routes.get("/admin/azureml/routing", name="admin.azureml.routing")
async def routing(request: web.Request) -> web.Response:
    aml = request.app[AZUREML]
    return web.json_response({"seed": aml.routing_seed, "served": aml.served})


@routes.post("/admin/azureml/routing", name="admin.azureml.routing.reset")
async def reset_routing(request: web.Request) -> web.Response:
    """`{"seed": N}`: restart every endpoint's routing sequence from this seed and forget what was served."""
    aml = request.app[AZUREML]
    body = await request.json() if request.can_read_body else {}
    seed = body.get("seed", aml.routing_seed) if isinstance(body, dict) else aml.routing_seed
    if not isinstance(seed, int):
        return web.json_response({"error": {"code": "BadArgument", "message": "seed must be an integer"}}, status=400)
    aml.routing_seed = seed
    aml.rngs.clear()
    aml.served.clear()
    return web.json_response({"seed": seed})


@routes.get("/admin/azureml/jobs/{job}/metrics", name="admin.azureml.job_metrics")
async def job_metrics(request: web.Request) -> web.Response:
    job = request.app[AZUREML].store.state.jobs.get(request.match_info["job"])
    if job is None or job.metrics is None:
        return web.json_response({"error": {"code": "NotFound", "message": "no metrics for that job"}}, status=404)
    return web.json_response(job.metrics)
