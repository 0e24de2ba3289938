"""The Azure ML swap's parts that need no service: what a swap goes back to (`swap.baseline`: never the deployment
being swapped in, whatever traffic a first attempt left it) and a traffic step that meets a busy endpoint (a look
waits a few pauses at most, then says "not yet")."""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.azureml import arm as arm_module
from shared.adapters.azureml.arm import Arm
from shared.adapters.azureml.changes import BUSY_TRIES, EndpointChanges
from shared.adapters.azureml.errors import AzureMLError
from shared.adapters.azureml.swap import baseline
from shared.targets import AzureMLTarget

WORKSPACE = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"
JOB = {"command": "python train.py", "environmentId": "azureml:env:1"}


def state(traffic: dict[str, int], deployments: list[str], mirror: dict[str, int] | None = None) -> dict[str, Any]:
    return {"traffic": traffic, "mirror": mirror or {}, "deployments": deployments}


def test_a_retried_swaps_half_moved_traffic_goes_back_to_the_old_deployments_as_they_were_weighted():
    got = baseline(state({"old": 90, "new": 10}, ["new", "old"], {"new": 5}), "new")
    assert got["traffic"] == {"old": 100} and got["deployments"] == ["old"] and got["mirror"] == {}
    got = baseline(state({"a": 60, "b": 30, "new": 10}, ["a", "b", "new"]), "new")
    assert got["traffic"] == {"a": 67, "b": 33} and got["deployments"] == ["a", "b"]


def test_a_swap_that_reached_all_the_traffic_goes_back_to_those_listed_at_zero_or_to_nothing():
    assert baseline(state({"old": 0, "new": 100}, ["new", "old"]), "new")["traffic"] == {"old": 100}
    nothing = baseline(state({"new": 100}, ["new"]), "new")  # nothing else listed: "nothing served"
    assert nothing["traffic"] == {} and nothing["deployments"] == [] and nothing["taken"] == 100


def test_a_first_attempt_is_observed_as_it_is():
    before = state({"old": 100}, ["old"])
    assert baseline(before, "new") == {**before, "taken": 0}
    assert baseline(state({}, []), "new")["traffic"] == {}  # an empty endpoint's first model


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)


def test_a_traffic_step_on_a_busy_endpoint_waits_a_few_pauses_then_says_not_yet(monkeypatch: pytest.MonkeyPatch):
    config = AzureMLTarget(workspace_id=WORKSPACE, job=JOB, deployment_timeout_minutes=20)
    arm = Arm(config, _Credential())
    sent: list[str] = []

    def send(method: str, path: str, operation: str, body: Any = None) -> Any:
        sent.append(method)
        raise AzureMLError(operation, 409, "Conflict", "another operation is in progress")

    monkeypatch.setattr(arm, "send", send)
    monkeypatch.setattr(arm, "get", lambda path, operation: {"location": "westeurope", "properties": {}})
    monkeypatch.setattr(arm_module, "BUSY_PAUSE", 0.05)
    monkeypatch.setattr("shared.adapters.azureml.changes.BUSY_PAUSE", 0.05)
    started = time.monotonic()
    assert EndpointChanges(arm, lambda: "westeurope").start_traffic("e", {"old": 90, "new": 10}, {}) is False
    assert time.monotonic() - started < 1  # not the deployment timeout (20 minutes)
    assert 2 <= len(sent) <= BUSY_TRIES + 1


def test_a_traffic_step_the_service_refuses_is_raised(monkeypatch: pytest.MonkeyPatch):
    arm = Arm(AzureMLTarget(workspace_id=WORKSPACE, job=JOB), _Credential())

    def send(method: str, path: str, operation: str, body: Any = None) -> Any:
        raise AzureMLError(operation, 400, "BadRequest", "no such deployment")

    monkeypatch.setattr(arm, "send", send)
    monkeypatch.setattr(arm, "get", lambda path, operation: {"location": "westeurope", "properties": {}})
    with pytest.raises(AzureMLError):
        EndpointChanges(arm, lambda: "westeurope").start_traffic("e", {"new": 100}, {})
