"""What an operator does by hand: add a scoring endpoint, patch one with a given model, roll one back. Each goes
through the same lease, PATCH and verification as an automatic deployment, and is recorded in its history."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.adapters.classic.errors import StudioApiError, TransportError, describe_error
from shared.adapters.classic.models import Endpoint
from shared.adapters.events import EventPublisher
from shared.adapters.ledger import Ledger
from shared.adapters.storage import Storage
from shared.adapters.studio import StudioClients
from shared.decisions import ENDPOINT_NAME, Gate, check_endpoint_name, find_target, rollback_choice
from shared.errors import NotFound, Refused
from shared.records import BlobRef, Deployment, EndpointResult, Run, new_operation_id, now_iso
from shared.settings import Settings, Target
from shared.usecases.deployment import EndpointDeployer
from shared.usecases.model_source import ModelSource


@dataclass
class Operations:
    """The operator's actions on endpoints."""

    settings: Settings
    storage: Storage
    ledger: Ledger
    studio: StudioClients
    events: EventPublisher
    deployer: EndpointDeployer
    gate: Gate

    def add_endpoint(self, name: str, description: str = "", target_name: str | None = None,
                     throttle_level: str = "Low", max_concurrent_calls: int | None = None) -> Endpoint:
        """Create a scoring endpoint; its history starts with the model it was created with."""
        target = find_target(self.settings, target_name)
        check_endpoint_name(name)
        ep = self.studio.management(target).create_endpoint(name, description, throttle_level, max_concurrent_calls)
        res = ep.resource(target.resource_name)
        loc = (res.Location or {}) if res else {}
        dep = Deployment(id=new_operation_id(), target=target.name, endpoint=name, operation="create",
                         outcome="Created", model_base=loc.get("BaseLocation"), model_path=loc.get("RelativeLocation"),
                         trigger="http")
        self.ledger.add_deployment(dep)
        owner = uuid.uuid4().hex
        cur = self.deployer.acquire(target, name, owner)
        if cur.deployment_id is None:
            cur.serve(dep)
        self.ledger.release(cur, owner)
        return ep

    def patch_model(self, target_name: str | None, endpoint: str, model_path: str, force: bool = True,
                    trigger: str = "http") -> EndpointResult:
        """Patch one endpoint with a given `.ilearner` (a path in this app's storage)."""
        target = find_target(self.settings, target_name)
        ref = self._model_ref(model_path)
        self.require_endpoint(target, endpoint)
        metric = None
        sibling = BlobRef(ref.container, ref.name.rsplit("/", 1)[0] + "/evaluation.csv") if "/" in ref.name else None
        if sibling is not None and self.storage.exists(sibling):
            metric = self.storage.read_evaluation(sibling).get(self.gate.metric)
        if not force:
            reason = self.gate.check(metric)
            if reason is not None:
                raise Refused(reason, "ModelRejected", conflict=True)
        run = Run(id=f"manual-{uuid.uuid4().hex[:12]}", kind="manual", status="Finished", target=target.name,
                  endpoints=[endpoint], model_path=ref.path, metrics={self.gate.metric: metric}
                  if metric is not None else {}, trigger=trigger)
        return self.deployer.deploy(target, endpoint, self._source(ref.path), run=run, operation="patch",
                                    force=True, trigger=trigger)

    def rollback(self, target_name: str | None, endpoint: str, to: str | None = None,
                 trigger: str = "http") -> EndpointResult:
        """Go back to the previous good model of an endpoint, or to a named deployment."""
        target = find_target(self.settings, target_name)
        self.require_endpoint(target, endpoint)
        chosen = rollback_choice(endpoint, self.ledger.history(target.name, endpoint),
                                 self.ledger.current(target.name, endpoint), to)
        assert chosen.model_path is not None
        if self.deployer.verifier.location_for(chosen.model_base or "", chosen.model_path) is None:
            return self._refresh_back(target, endpoint, chosen, trigger)  # the model it was created with
        run = Run(id=chosen.run_id or f"rollback-{chosen.id}", kind="manual", status="Finished", target=target.name,
                  endpoints=[endpoint], model_path=chosen.model_path, data_time=chosen.data_time or now_iso(),
                  metrics={self.gate.metric: chosen.metric} if chosen.metric is not None else {}, trigger=trigger)
        source = self._source(chosen.model_path, chosen.model_base)
        result = self.deployer.deploy(target, endpoint, source, run=run, operation="rollback", force=True,
                                      trigger=trigger)
        if result.outcome == "Deployed":
            self._rolled_back(target, endpoint, chosen, result.deployment_id)
        return result

    def _refresh_back(self, target: Target, endpoint: str, chosen: Deployment, trigger: str) -> EndpointResult:
        owner = uuid.uuid4().hex
        cur = self.deployer.acquire(target, endpoint, owner)
        dep = Deployment(id=new_operation_id(), target=target.name, endpoint=endpoint, operation="rollback",
                         model_base=chosen.model_base, model_path=chosen.model_path, trigger=trigger)
        try:
            self.studio.management(target).refresh(endpoint, overwrite_resources=True)
            dep.outcome = "Deployed"
            cur.serve(dep)
        except (StudioApiError, TransportError) as exc:
            dep.outcome, dep.reason = "Failed", describe_error(exc)
        finally:
            self.ledger.release(cur, owner)
        self.ledger.save_deployment(dep)
        if dep.outcome == "Deployed":
            self._rolled_back(target, endpoint, chosen, dep.id)
        return EndpointResult(endpoint, dep.outcome, dep.reason, dep.id)

    def _rolled_back(self, target: Target, endpoint: str, chosen: Deployment, deployment_id: str | None) -> None:
        self.events.publish("EndpointRolledBack", f"{target.name}/{endpoint}", {
            "endpoint": endpoint, "restoredModel": chosen.model_path, "toDeployment": chosen.id,
            "deploymentId": deployment_id})

    def _source(self, relative: str, base: str | None = None) -> ModelSource:
        return ModelSource(self.settings, self.storage.minter, self.studio, relative, base=base)

    def _model_ref(self, model_path: str) -> BlobRef:
        try:
            ref = BlobRef.parse(model_path)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        if ref.container != self.settings.models_container:
            raise Refused(f"models are taken only from the '{self.settings.models_container}' container",
                          "OutsideContainer")
        if not ref.name.lower().endswith(".ilearner") or ".." in ref.name.split("/"):
            raise Refused("a model must be a .ilearner blob")
        if not self.storage.exists(ref):
            raise NotFound(f"{ref.path} does not exist")
        return ref

    def require_endpoint(self, target: Target, endpoint: str) -> Endpoint:
        """The endpoint, if it exists and may be patched (never the default endpoint)."""
        if not ENDPOINT_NAME.match(endpoint):
            raise Refused(f"'{endpoint}' is not a valid endpoint name", "InvalidEndpointName")
        if endpoint == self.studio.default_endpoint(target):
            raise Refused("the default endpoint is never patched: it follows the experiment", "DefaultEndpoint",
                          conflict=True)
        ep = self.studio.endpoint(target, endpoint)
        if ep is None:
            raise NotFound(f"endpoint '{endpoint}' does not exist on target '{target.name}'")
        return ep
