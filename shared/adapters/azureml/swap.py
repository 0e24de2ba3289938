"""Proving a swap on an Azure ML endpoint, and undoing one, without following any long-running operation: each
look reads what the service shows (the new deployment's provisioningState, then the endpoint's and its traffic)
and moves the swap on by one step - the deployment made and scored directly, the mirror (when configured), each
traffic step started and, once in place, the endpoint scored - so a swap that takes minutes is carried by a queued
fan-out's `prove` messages across invocations, and the inline path is the same looks in a loop. A deployment that
ended Failed says why through its create's error (when this instance started it) and its logs' last lines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared import failpoints
from shared.adapters.azureml.arm import Arm
from shared.adapters.azureml.changes import EndpointChanges
from shared.adapters.azureml.errors import AzureMLError
from shared.adapters.azureml.scoring import Scoring
from shared.ports.serving import Keepalive, ModelRef, Observed, Verdict
from shared.targets import AzureMLTarget

PROVISIONING = ("Creating", "Updating")
ENDED_BADLY = ("Failed", "Canceled")


class SwapSteps:
    """One endpoint's swap to a model's deployment (`deployment_for` names it), step by step."""

    def __init__(self, config: AzureMLTarget, arm: Arm, changes: EndpointChanges, scoring: Scoring,
                 deployment_for: Callable[[str, ModelRef], str]) -> None:
        self.config, self.arm, self.changes, self.scoring = config, arm, changes, scoring
        self._deployment_for = deployment_for
        # (endpoint, deployment) -> where the create this instance started says how it ended (its error, if any)
        self.started: dict[tuple[str, str], str] = {}

    def proof_seconds(self, switch: float, poll: float) -> float:
        """The deployment's create and each traffic operation, each within the deployment timeout."""
        operations = 1 + len(self.config.traffic_steps) + (1 if self.config.mirror_percent else 0)
        return 60 * self.config.deployment_timeout_minutes * operations + switch + poll

    def once(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
             waited: float) -> Verdict | None:
        """One step of the swap from what the service shows now: the deployment still being made -> None; Failed
        -> a Verdict with why (its operation's error, its logs' last lines) and `not_taken`; made and without
        traffic -> scored directly, the first traffic operation started -> None; the endpoint busy -> None;
        a step's traffic in place -> the endpoint scored, the next step started -> None, or Verdict() after the
        last. A look the service did not let through raises its AzureMLError (transient)."""
        new = self._deployment_for(name, model)
        try:
            return self._step(name, model, new, smoke_row, before, waited)
        except AzureMLError as exc:
            if exc.transient and not exc.input_refused:
                raise
            return Verdict(f"the deployment {new} of {model.path} did not serve: {exc.describe()}")

    def _step(self, name: str, model: ModelRef, new: str, smoke_row: dict[str, str] | None, before: Observed,
              waited: float) -> Verdict | None:
        found = self.arm.find(f"/onlineEndpoints/{name}/deployments/{new}", f"get deployment {new}")
        state = ((found or {}).get("properties") or {}).get("provisioningState")
        if found is None:
            return Verdict(f"the endpoint has no deployment {new} of {model.path}")
        if state in PROVISIONING:
            if waited < 60 * self.config.deployment_timeout_minutes:
                return None
            return Verdict(f"the deployment {new} of {model.path} did not end within "
                           f"{self.config.deployment_timeout_minutes:g} minutes; it goes on, and is looked at again",
                           transient=True)
        if state in ENDED_BADLY:
            refused = self._failure(name, new)
            return Verdict(f"the deployment {new} of {model.path} did not serve: {refused.describe()}",
                           not_taken=refused)
        endpoint = self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}")
        props = endpoint.get("properties") or {}
        if props.get("provisioningState") in PROVISIONING:
            return None  # a traffic operation (ours, or someone's) is under way
        share = int((props.get("traffic") or {}).get(new, 0))
        old = {d: s for d, s in before.state["traffic"].items() if s and d != new}
        steps = self.config.traffic_steps if old else [100]  # nothing else takes traffic: all of it at once
        mirroring = bool(self.config.mirror_percent and old)
        if share == 0:
            mirrored = (props.get("mirrorTraffic") or {}).get(new) == self.config.mirror_percent
            if not (mirroring and mirrored):
                if smoke_row:
                    self.scoring.score(endpoint, smoke_row, new)  # the deployment itself answers
                if mirroring:
                    self.changes.start_traffic(name, before.state["traffic"], {new: self.config.mirror_percent})
                    return None
            self.changes.start_traffic(name, _shares(old, new, steps[0]), {})
            return None  # started, or the endpoint stayed busy: the next look sees which
        failpoints.reached("azureml-traffic-step")
        if smoke_row:
            self.scoring.score(endpoint, smoke_row)
        later = [step for step in steps if step > share]
        if not later:
            return Verdict()
        self.changes.start_traffic(name, _shares(old, new, later[0]), {})
        return None

    def _failure(self, name: str, deployment: str) -> AzureMLError:
        """Why a deployment ended Failed: its create's error (when this instance started it), its logs' last
        lines. A quota refusal is not the model's fault; anything else is."""
        operation = f"deploy {deployment} to {name}"
        status = self.started.pop((name, deployment), None)
        error = self.arm.error_of(status, operation) if status else None
        code = error.code if error is not None else "DeploymentFailed"
        message = error.message if error is not None else "the deployment ended Failed"
        logs = self.changes.logs(name, deployment)
        return AzureMLError(operation, None, code, message + (f"; its logs end: {logs}" if logs else ""),
                            input_refused=code not in ("OutOfQuota",))

    def until_decided(self, name: str, model: ModelRef, smoke_row: dict[str, str] | None, before: Observed,
                      keepalive: Keepalive) -> Verdict:
        """`verify_once` looked at until it decides (within `proof_seconds`); a look the service did not let
        through ends it unproven."""
        started = time.monotonic()
        bound = self.proof_seconds(0, 0)
        while True:
            keepalive()
            waited = time.monotonic() - started
            try:
                verdict = self.once(name, model, smoke_row, before, waited)
            except AzureMLError as exc:
                return Verdict(f"the deployment of {model.path} could not be checked: {exc.describe()}",
                               transient=True)
            if verdict is not None:
                return verdict
            if waited >= bound:
                return Verdict(f"the deployment of {model.path} was not proven within {bound:.0f} s", transient=True)
            time.sleep(self.arm.look_seconds())

    def restore(self, name: str, before: Observed, smoke_row: dict[str, str] | None,
                keepalive: Keepalive) -> str | None:
        """Traffic back as it was (to the deployments that still exist; no call when it is so already), and the
        deployments made since deleted - the one swapped in among them (`baseline` took it out of `before`) - but
        one still being made: its attempt's verdict was then unproven (transient), and the retry finds it by name
        (or, when the attempt ends otherwise, the next put's prune deletes it). A baseline of "nothing served"
        (the swapped-in deployment held all the traffic, and no other was listed) leaves the endpoint with no
        traffic and says so: the model that served before cannot be put back from here."""
        try:
            found = self.changes.deployments(name)
            now = {d["name"] for d in found}
            traffic = {d: share for d, share in before.state["traffic"].items() if d in now}
            if traffic and sum(traffic.values()) != 100:
                return "the deployments that served before are gone: traffic cannot go back"
            lost = not traffic and bool(before.state.get("taken"))
            mirror = {d: s for d, s in before.state["mirror"].items() if d in now}
            props = self.arm.get(f"/onlineEndpoints/{name}", f"get endpoint {name}").get("properties") or {}
            if _live(props.get("traffic")) != _live(traffic) or _live(props.get("mirrorTraffic")) != _live(mirror):
                self.changes.set_traffic(name, traffic, mirror, keepalive)
            for d in sorted(found, key=lambda d: str(d["name"])):
                made = (d.get("properties") or {}).get("provisioningState")
                if d["name"] not in before.state["deployments"] and made not in PROVISIONING:
                    self.changes.delete(name, d["name"], keepalive)
        except AzureMLError as exc:
            return exc.describe()
        return "nothing but the model swapped in served (it held all the traffic): the endpoint serves nothing " \
               "now" if lost else None


def baseline(state: dict[str, Any], new: str) -> dict[str, Any]:
    """What served before a swap to the deployment `new`, without `new`: a retried swap observes the traffic its
    first attempt moved ({old: 90, new: 10}), and that is never what to go back to. `new`'s share goes back to the
    others as they were weighted - to those listed at 0 % alike when it held all of it (the swap had reached its
    last step: they served before it) -, and it is none of the deployments that were there before (a restore
    zeroes and deletes it). None other listed: "nothing served" (the traffic empty, `taken` 100)."""
    shown = {d: int(s) for d, s in (state.get("traffic") or {}).items()}
    taken = shown.pop(new, 0)
    if taken and shown:
        weights = shown if sum(shown.values()) else {d: 1 for d in shown}
        total = sum(weights.values())
        shown = {d: 100 * w // total for d, w in weights.items()}
        first = max(shown, key=lambda d: shown[d])
        shown[first] += 100 - sum(shown.values())
    return {**state, "traffic": shown, "mirror": {d: s for d, s in (state.get("mirror") or {}).items() if d != new},
            "deployments": [d for d in state.get("deployments") or [] if d != new], "taken": taken}


def _live(traffic: Any) -> dict[str, int]:
    return {d: int(s) for d, s in (traffic or {}).items() if s}


def _shares(old: dict[str, int], new: str, step: int) -> dict[str, int]:
    """Traffic with `step` % on the new deployment and the rest spread over the old ones as they were weighted."""
    if not old or step >= 100:
        return {**{d: 0 for d in old}, new: 100}
    rest, total = 100 - step, sum(old.values())
    shares = {d: rest * s // total for d, s in old.items()}
    first = next(iter(shares))
    shares[first] += rest - sum(shares.values())
    return {**shares, new: step}
