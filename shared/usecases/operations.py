"""What an operator does by hand: add a scoring endpoint, patch one with a given model, roll one back. Each goes
through the same lease, swap and verification as an automatic deployment, and is recorded in its history."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from shared.decisions import ENDPOINT_NAME, blob_in, check_endpoint_name, final_status, find_target, rollback_choice
from shared.errors import AlreadyExists, DataRejected, NotFound, Refused
from shared.gate import Gate
from shared.ports.blobs import BlobStore
from shared.ports.events import EventSink
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.ports.serving import EndpointInfo, ModelRef
from shared.records import BlobRef, Current, Deployment, EndpointResult, Run, iso, now_iso
from shared.settings import Settings, Target
from shared.usecases.deployment import DeploymentPlan, EndpointDeployer
from shared.usecases.watch_start import start_watch


@dataclass
class Operations:
    """The operator's actions on endpoints."""

    settings: Settings
    storage: BlobStore
    ledger: Ledger
    services: Services
    events: EventSink
    deployer: EndpointDeployer
    gate: Gate

    def add_endpoint(self, name: str, description: str = "", target_name: str | None = None,
                     options: dict[str, Any] | None = None) -> EndpointInfo:
        """Create a scoring endpoint (`options`: the service's own, e.g. throttle_level); its history starts with
        the model it was created with."""
        target = find_target(self.settings, target_name)
        check_endpoint_name(name)
        serving = self.services.serving(target)
        adopting = None
        try:
            ep = serving.create_endpoint(name, {"description": description, **(options or {})})
        except AlreadyExists as exc:
            # It exists. If the ledger never hears of it (an earlier call created it, then could not record it),
            # adopt it, so its history starts with the model it was created with; if a concurrent call is
            # recording it right now, this one is a conflict.
            if not self._unrecorded(target, name):
                raise Refused(str(exc), "EndpointExists", conflict=True) from None
            found = serving.endpoint(name)
            if found is None:
                raise
            adopting, ep = exc, found
        dep = Deployment(id="create", target=target.name, endpoint=name, operation="create", outcome="Created",
                         model_base=ep.model_base, model_path=ep.model_path, trigger="http")
        _, recorded = self.ledger.add_deployment(dep)  # one create row per endpoint, whoever writes it first
        if not recorded:  # another call recorded it: that call created it (a service may answer both with success)
            raise Refused(str(adopting) if adopting else f"endpoint '{name}' exists already", "EndpointExists",
                          conflict=True)
        owner = uuid.uuid4().hex
        cur = self.deployer.acquire(target, name, owner)
        if cur.deployment_id is None:
            cur.serve(dep)
        self.ledger.release(cur, owner)
        return ep

    def patch_model(self, target_name: str | None, endpoint: str, model_path: str, force: bool = False,
                    trigger: str = "http", caller: str | None = None) -> EndpointResult:
        """Patch one endpoint with a given `.ilearner` (a path in this app's storage). The model must pass the gate
        unless `force` - one without an evaluation beside it cannot be gated, so it needs `force` too (a run's
        model always has one); a forced deployment is recorded as forced, with the caller. Nothing is done
        (outcome `Unchanged`) when the endpoint serves that model already."""
        target = find_target(self.settings, target_name)
        ref = self._model_ref(model_path)
        self.require_endpoint(target, endpoint)
        metrics: dict[str, float] | None = None
        sibling = BlobRef(ref.container, ref.name.rsplit("/", 1)[0] + "/evaluation.csv") if "/" in ref.name else None
        if sibling is not None and self.storage.exists(sibling):
            try:
                metrics = self.gate.gated(self.storage.read_evaluation(sibling, self.gate.metrics))
            except DataRejected as exc:
                raise Refused(f"{sibling.path}: {exc.message}", exc.code) from None
        below = self.gate.check(metrics) if metrics is not None else \
            f"{ref.path} has no evaluation beside it: the gate cannot be applied"
        if below is not None and not force:
            raise Refused(f"{below}; send \"force\": true to deploy it anyway (recorded as forced)", "ModelRejected",
                          conflict=True)
        data_time, taken_in = self._model_time(ref)
        runs: list[Run] = []

        def decide(cur: Current) -> DeploymentPlan | EndpointResult:
            if cur.deployment_id and cur.model_path == ref.path:
                return EndpointResult(endpoint, "Unchanged", "the endpoint serves this model already",
                                      cur.deployment_id)
            runs.append(self._stored_run(Run(
                id=f"patch-{uuid.uuid4().hex[:16]}", kind="manual", status="Deploying", target=target.name,
                endpoints=[endpoint], model_path=ref.path, metrics=metrics or {}, trigger=trigger, caller=caller,
                forced=below is not None, data_time=data_time, created_at=taken_in,
                transitions=[{"status": "Deploying", "at": now_iso(), "reason": f"patch by {caller or trigger}"}])))
            return DeploymentPlan(ModelRef(ref.path), runs[0], "patch")

        result = self.deployer.deploy_decided(target, endpoint, decide, trigger, caller, forced=below is not None)
        self._record(runs, result)
        return result

    def rollback(self, target_name: str | None, endpoint: str, to: str | None = None,
                 trigger: str = "http", caller: str | None = None, only_from: str | None = None) -> EndpointResult:
        """Go back to the previous good model of an endpoint (walking back through its history), or to a named
        deployment. The choice is made under the endpoint's lease, from what it serves at that moment; with
        `only_from`, only while the endpoint's pointer names that deployment (else Unchanged: a watch's check
        delivered twice rolls back once)."""
        target = find_target(self.settings, target_name)
        self.require_endpoint(target, endpoint)
        seen = self.ledger.current(target.name, endpoint)  # what the caller's request saw

        def decide(cur: Current) -> DeploymentPlan | EndpointResult:
            if only_from is not None and cur.deployment_id != only_from:
                return EndpointResult(endpoint, "Unchanged", f"the endpoint no longer serves {only_from}",
                                      cur.deployment_id)
            history = self.ledger.history(target.name, endpoint)
            if to is None and seen is not None and cur.deployment_id != seen.deployment_id and \
                    any(d.id == cur.deployment_id and d.operation == "rollback" for d in history):
                # another rollback landed while this one waited: the caller asked for one step back, not two
                return EndpointResult(endpoint, "Unchanged", f"a concurrent rollback already went back; the "
                                      f"endpoint serves {cur.model_path}", cur.deployment_id)
            if to is not None and cur.model_path and any(d.id == to and d.model_path == cur.model_path
                                                         for d in history):
                return EndpointResult(endpoint, "Unchanged", f"the endpoint serves {cur.model_path} already",
                                      cur.deployment_id)
            pick = rollback_choice(endpoint, history, cur, to)
            assert pick.model_path is not None
            taken_in = pick.data_order.split("|")[1] if pick.data_order else now_iso()  # keeps its data's order
            runs.append(self._stored_run(Run(
                id=f"rollback-{uuid.uuid4().hex[:16]}", kind="manual", status="Deploying", target=target.name,
                endpoints=[endpoint], model_path=pick.model_path, model_base=pick.model_base,
                data_time=pick.data_time or now_iso(), created_at=taken_in, trigger=trigger, caller=caller,
                metrics=pick.metrics or ({self.gate.primary: pick.metric} if pick.metric is not None else {}),
                transitions=[{"status": "Deploying", "at": now_iso(), "reason": f"rollback to {pick.id} by "
                              f"{caller or trigger}"}])))
            return DeploymentPlan(ModelRef(pick.model_path, pick.model_base), runs[0], "rollback", pick.id)

        runs: list[Run] = []
        result = self.deployer.deploy_decided(target, endpoint, decide, trigger, caller)
        self._record(runs, result)  # (its EndpointRolledBack is the deployment's, with its EndpointUpdated)
        return result

    def _stored_run(self, run: Run) -> Run:
        """An operator's action as a run, stored before its first effect: whatever happens to this call, reconcile
        finds it and finishes the deployment."""
        stored, _ = self.ledger.create_run(run)
        return stored

    def _record(self, runs: list[Run], result: EndpointResult) -> None:
        """The action's ending on its run (a run left Deploying - the attempt Pending - is reconcile's)."""
        if not runs:
            return  # decided under the lease that there was nothing to do: no run was stored
        final = final_status([result])
        if final == "Deployed":
            start_watch(self.settings, self.ledger, runs[0])
        if final != "Deploying":
            self.ledger.change(runs[0], final, result.reason if final != "Deployed" else None,
                               outcomes={result.outcome: 1}, endpoint_results=[{
                                   "endpoint": result.endpoint, "outcome": result.outcome, "reason": result.reason,
                                   "deploymentId": result.deployment_id}])

    def _model_time(self, ref: BlobRef) -> tuple[str, str]:
        """When a model's data landed and was taken in (its place in "newest data wins"): its run's, for a run's
        model; else the model file's Last-Modified - never the time of the call."""
        run = self.ledger.get_run(ref.name.split("/", 1)[0]) if "/" in ref.name else None
        if run is not None:
            return run.data_time, run.created_at
        landed = iso(self.storage.info(ref).last_modified)
        return landed, landed

    def _unrecorded(self, target: Target, name: str, wait_seconds: float = 5.0) -> bool:
        """True when the ledger has no history of the endpoint, even after its creator had time to record it."""
        deadline = time.monotonic() + wait_seconds
        while not self.ledger.history(target.name, name):
            if time.monotonic() > deadline:
                return True
            time.sleep(0.25)
        return False

    def _model_ref(self, model_path: str) -> BlobRef:
        if ".." in model_path.split("/"):
            raise Refused("a model must be a .ilearner blob in this app's models container")
        ref = blob_in(self.settings.models_container, model_path, "a model")
        if not ref.name.lower().endswith(".ilearner"):
            raise Refused("a model must be a .ilearner blob")
        if not self.storage.exists(ref):
            raise NotFound(f"{ref.path} does not exist")
        return ref

    def require_endpoint(self, target: Target, endpoint: str) -> EndpointInfo:
        """The endpoint, if it exists and may be patched (never the default endpoint)."""
        if not ENDPOINT_NAME.match(endpoint):
            raise Refused(f"'{endpoint}' is not a valid endpoint name", "InvalidEndpointName")
        serving = self.services.serving(target)
        if endpoint == serving.protected_endpoint():
            raise Refused("the default endpoint is never patched: it follows the experiment", "DefaultEndpoint",
                          conflict=True)
        ep = serving.endpoint(endpoint)
        if ep is None:
            raise NotFound(f"endpoint '{endpoint}' does not exist on target '{target.name}'")
        return ep
