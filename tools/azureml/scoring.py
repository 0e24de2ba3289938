"""The scoring URI of every online endpoint: `POST {scoringUri}` with `Authorization: Bearer <key | aml token |
Entra token>`, routed by the endpoint's traffic weights (a seeded random choice per endpoint, so tests can predict
it), mirrored traffic copied to the mirror deployment and its answer discarded, and `azureml-model-deployment`
sending a request to one named deployment (how a deployment with 0 % traffic is tested).

Payload (MLflow's tabular input, the shape an MLflow or custom-scoring deployment of a tabular model takes):
`{"input_data": {"columns": [...], "index": [...], "data": [[...], ...]}}` (split orientation) or
`{"input_data": [{"col": value, ...}, ...]}` (records). Answer: a JSON list, one object per row,
`{"label": <predicted class>, "probability": <probability of the positive class>}`; the response carries
`azureml-model-deployment: <deployment that answered>`. Status codes as documented for managed endpoints: 401 bad
credentials, 404 no deployment with positive weight (or an unknown deployment named in the header), 424 the model
refused the input (`ms-azureml-model-error-statuscode`, `ms-azureml-model-error-reason`).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from tools.azureml.config import AAD_SCORING_AUDIENCE
from tools.azureml.state import Deployment, Endpoint
from tools.azureml.workspace import AZUREML
from tools.emulator.context import bearer_token, same_secret
from tools.emulator.identity import IDENTITY
from tools.emulator.learner import DataError, ModelError, load_model

if TYPE_CHECKING:
    from tools.azureml.service import AzureML

routes = web.RouteTableDef()
HEADER = "azureml-model-deployment"
NO_ROUTE = ("No valid deployments to route to. Please check that the endpoint has at least one deployment with "
            "positive weight values or use a deployment specific header to route.")


def _reply(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers={"x-request-id": str(uuid.uuid4()), **(headers or {})})


def _authorized(request: web.Request, aml: AzureML, ep: Endpoint) -> bool:
    token = bearer_token(request)
    if token is None:
        return False
    if ep.auth_mode == "Key":
        return same_secret(token, ep.primary_key, ep.secondary_key)
    if ep.auth_mode == "AMLToken":
        try:
            claims = jwt.decode(token, aml.token_key, algorithms=["HS256"], audience=aml.scoring_uri(ep.name))
        except jwt.PyJWTError:
            return False
        return bool(claims.get("endpoint") == ep.name)
    return request.app[IDENTITY].verify(token, AAD_SCORING_AUDIENCE) is not None


def _table(body: Any) -> tuple[dict[str, list[str]], int]:
    data = body.get("input_data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("columns"), list) and isinstance(data.get("data"), list):
        names = [str(c) for c in data["columns"]]
        rows = data["data"]
        if not all(isinstance(r, list) and len(r) == len(names) for r in rows):
            raise DataError(f"every row of input_data.data must have {len(names)} values (one per column)")
        return {n: ["" if r[i] is None else str(r[i]) for r in rows] for i, n in enumerate(names)}, len(rows)
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        names = sorted({k for r in data for k in r})
        return {n: ["" if r.get(n) is None else str(r.get(n)) for r in data] for n in names}, len(data)
    raise DataError('the body must be {"input_data": {"columns": [...], "data": [[...]]}} or '
                    '{"input_data": [{...}, ...]}')


def _score(aml: AzureML, dep: Deployment, body: Any) -> list[dict[str, Any]]:
    assert dep.serving is not None
    model = aml.loaded.get(dep.serving)
    if model is None:
        model = aml.loaded[dep.serving] = load_model(json.loads(dep.serving))
    columns, n = _table(body)
    proba = model.predict_proba(columns, n)
    labels = model.label(proba)
    return [{"label": labels[i], "probability": float(proba[i])} for i in range(n)]


def _count(aml: AzureML, endpoint: str, deployment: str, kind: str) -> None:
    per = aml.served.setdefault(endpoint, {}).setdefault(deployment, {"live": 0, "mirror": 0})
    per[kind] += 1


async def _mirror(aml: AzureML, dep: Deployment, body: Any) -> None:
    with contextlib.suppress(DataError, ModelError):
        _score(aml, dep, body)  # the answer is discarded, as the service discards mirrored answers
    _count(aml, dep.endpoint, dep.name, "mirror")


@routes.post("/azureml/inference/{endpoint}/score", name="azureml.score")
async def score(request: web.Request) -> web.StreamResponse:
    aml = request.app[AZUREML]
    ep = aml.store.state.endpoints.get(request.match_info["endpoint"])
    if ep is None or ep.provisioning_state in ("Creating", "Deleting"):
        return _reply(404, {"message": f"Endpoint '{request.match_info['endpoint']}' was not found."})
    if not _authorized(request, aml, ep):
        return _reply(401, {"message": "Unauthorized: the key or token is missing, invalid or expired."},
                      {"WWW-Authenticate": "Bearer"})
    echo = {"x-ms-client-request-id": request.headers["x-ms-client-request-id"]} \
        if "x-ms-client-request-id" in request.headers else {}
    deployments = {d.name: d for d in aml.store.state.deployments_of(ep.name) if d.serving is not None}
    named = request.headers.get(HEADER)
    mirror_to = None
    if named is not None:
        dep = deployments.get(named)
        if dep is None:
            return _reply(404, {"message": f"Deployment '{named}' was not found in endpoint '{ep.name}' or serves "
                                           f"no model."}, echo)
    else:
        weighted = [(n, w) for n, w in ep.traffic.items() if w > 0 and n in deployments]
        if not weighted:
            return _reply(404, {"message": NO_ROUTE}, echo)
        rng = aml.rng(ep.name)
        dep = deployments[rng.choices([n for n, _ in weighted], [w for _, w in weighted])[0]]
        for name, pct in ep.mirror_traffic.items():
            if pct > 0 and name in deployments and rng.random() * 100 < pct:
                mirror_to = deployments[name]
    try:
        body = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if mirror_to is not None:
        aml.spawn(_mirror(aml, mirror_to, body))
    headers = {HEADER: dep.name, **echo}
    try:
        result = _score(aml, dep, body)
    except (DataError, ModelError) as exc:
        return _reply(424, {"error": str(exc)}, {**headers, "ms-azureml-model-error-statuscode": "400",
                                                 "ms-azureml-model-error-reason": "model_error"})
    _count(aml, ep.name, dep.name, "live")
    return _reply(200, result, headers)


@routes.get("/azureml/inference/{endpoint}/swagger.json", name="azureml.swagger")
async def swagger(request: web.Request) -> web.StreamResponse:
    aml = request.app[AZUREML]
    ep = aml.store.state.endpoints.get(request.match_info["endpoint"])
    if ep is None:
        return _reply(404, {"message": "Endpoint not found."})
    if not _authorized(request, aml, ep):
        return _reply(401, {"message": "Unauthorized."})
    return _reply(200, {"swagger": "2.0", "info": {"title": ep.name, "version": "1.0"},
                        "paths": {"/score": {"post": {"operationId": "RunMLService", "consumes": ["application/json"],
                                                      "produces": ["application/json"]}}}})
