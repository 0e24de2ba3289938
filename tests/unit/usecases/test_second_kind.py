"""A second kind of target needs adapters and settings, not edits across the use cases: the fake Studio registered
again under the throwaway kind "fake2" drives one target of two, and a whole retrain runs on it - data under its
data prefix -> its training service's job -> its model -> deployed on its endpoint - through the unchanged use
cases, beside a classic target that sees none of it."""

from __future__ import annotations

import json

import pytest

from shared.composition import UseCases
from shared.errors import NotFound
from shared.events import EndpointUpdated, JobSubmitted
from shared.ports.services import Services
from shared.records import BlobRef
from tests.fakes.events import FakeEvents
from tests.fakes.ledger import FakeLedger
from tests.fakes.storage import FakeBlobStore
from tests.fakes.studio import FakeKind
from tests.fakes.world import World, fake_settings

TARGETS = json.dumps([
    {"name": "studio", "kind": "classic", "management_url": "https://management.azureml.net/workspaces/w/"
     "webservices/a", "management_key": "k", "resource_name": "trained model"},
    {"name": "ml", "kind": "fake2", "data_prefix": "ml"},  # no management URL, key or resource: not classic
])


def two_kinds() -> tuple[World, FakeKind]:
    settings = fake_settings(RETRAIN_TARGETS=TARGETS)
    storage, ledger, events = FakeBlobStore(settings.rejected_container), FakeLedger(), FakeEvents()
    classic, fake2 = FakeKind(storage), FakeKind(storage)
    services = Services(settings.targets, {"classic": classic, "fake2": fake2})
    app = UseCases(settings, storage, ledger, events, services)
    return World(settings, storage, ledger, events, classic, app), fake2


def test_a_whole_retrain_runs_on_the_second_kinds_target_through_the_unchanged_use_cases():
    w, fake2 = two_kinds()
    assert [(t.name, t.kind) for t in w.settings.targets] == [("studio", "classic"), ("ml", "fake2")]
    w.app.operations.add_endpoint("acme", "a tenant on the new kind", target_name="ml")
    w.app.operations.add_endpoint("acme", "a namesake on the classic target", target_name="studio")
    ml, studio = fake2.studio("ml"), w.kind.studio("studio")
    run = w.app.intake.accept(w.drop("ml/acme/data.csv"))
    assert run is not None and (run.status, run.target, run.endpoints) == ("Training", "ml", ["acme"])
    [job] = ml.jobs.values()
    assert job.data == BlobRef("training-data", "ml/acme/data.csv") and not studio.jobs
    assert w.events.of(JobSubmitted, run.id)[0].target == "ml"
    assert run.job_id is not None
    ml.finish(run.job_id)
    result = w.app.model_landing.landed(BlobRef.parse(str(run.model_path)))
    assert result is not None and result.status == "Done"
    assert w.run(run.id).status == "Deployed" and ml.endpoints["acme"].model_path == run.model_path
    assert studio.endpoints["acme"].model_path == "experiment/model.ilearner"  # the classic namesake untouched
    cur = w.ledger.current("ml", "acme")
    assert cur is not None and cur.run_id == run.id and w.ledger.current("studio", "acme") is not None
    assert [d.outcome for d in w.ledger.history("ml", "acme")] == ["Deployed", "Created"]
    assert [d.outcome for d in w.ledger.history("studio", "acme")] == ["Created"]
    [updated] = w.events.of(EndpointUpdated, run.id)
    assert (updated.target, updated.endpoint) == ("ml", "acme")
    assert w.app.views.endpoint("ml", "acme")["kind"] == "fake2"
    assert [c[0] for c in studio.calls] == ["create_endpoint"]  # the classic service was asked nothing else


def test_operations_and_reconcile_drive_both_kinds():
    w, fake2 = two_kinds()
    w.app.operations.add_endpoint("acme", target_name="ml")
    w.app.operations.add_endpoint("beta", target_name="studio")
    ml, studio = fake2.studio("ml"), w.kind.studio("studio")
    on_ml = w.app.intake.accept(w.drop("ml/acme/d.csv"))
    on_studio = w.app.intake.accept(w.drop("beta/d.csv"))
    assert on_ml is not None and on_studio is not None and on_studio.target == "studio"
    summary = w.app.reconciler.reconcile()  # both jobs finished where no trigger saw them
    assert summary["promoted"] == 2 and summary["errors"] == 0
    assert ml.endpoints["acme"].model_path == on_ml.model_path
    assert studio.endpoints["beta"].model_path == on_studio.model_path
    back = w.app.operations.rollback("ml", "acme")
    assert back.outcome == "Deployed" and ml.endpoints["acme"].model_path == "experiment/model.ilearner"
    health = w.app.views.health()
    assert health["status"] == "ok" and set(health["checks"]) == {"storage", "fake:studio", "fake:ml"}


def test_a_kind_without_adapters_is_named_when_the_services_are_built():
    settings = fake_settings(RETRAIN_TARGETS=TARGETS)
    with pytest.raises(NotFound) as info:
        Services(settings.targets, {"classic": FakeKind(FakeBlobStore())})
    assert "fake2" in str(info.value)
