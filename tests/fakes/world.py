"""The use cases wired over fakes: settings as a test wants them, the fakes to steer and inspect, and helpers that
drop data and models the way a user does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.composition import UseCases
from shared.ports.services import Services
from shared.records import BlobRef, Run
from shared.settings import Settings, load_settings
from tests.fakes.events import FakeEvents
from tests.fakes.ledger import FakeLedger
from tests.fakes.queues import FakeQueue
from tests.fakes.storage import FakeBlobStore
from tests.fakes.studio import FakeKind, FakeStudio
from tools.emulator.census import csv_text

SMOKE_ROW = {"age": "39", "workclass": "State-gov", "education": "Bachelors"}
BASE_SETTINGS = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "RETRAIN_BES_URL": "https://ussouthcentral.services.azureml.net/workspaces/w/services/train",
    "RETRAIN_BES_KEY": "bes-key-for-fakes",
    "RETRAIN_MANAGEMENT_URL": "https://management.azureml.net/workspaces/w/webservices/predict",
    "RETRAIN_MANAGEMENT_KEY": "management-key-for-fakes", "RETRAIN_RESOURCE_NAME": "trained model",
    "RETRAIN_ENDPOINTS": "", "RETRAIN_SMOKE_ROW": json.dumps(SMOKE_ROW), "RETRAIN_JOB_WAIT_SECONDS": "0",
    "RETRAIN_JOB_POLL_SECONDS": "0.01", "RETRAIN_INTERACTIVE_WAIT_SECONDS": "0.5", "RETRAIN_MIN_ROWS": "50",
}


def fake_settings(**overrides: str) -> Settings:
    return load_settings({**BASE_SETTINGS, **overrides})


@dataclass
class World:
    settings: Settings
    storage: FakeBlobStore
    ledger: FakeLedger
    events: FakeEvents
    kind: FakeKind
    app: UseCases
    queue: FakeQueue = field(default_factory=FakeQueue)

    @property
    def studio(self) -> FakeStudio:
        return self.kind.studio(self.settings.targets[0])

    def endpoint(self, name: str, model: str | None = "experiment/model.ilearner") -> str:
        """An endpoint created through the app (its history starts with its first model)."""
        self.app.operations.add_endpoint(name, "fake")
        if model != self.studio.endpoints[name].model_path:
            self.studio.endpoints[name].model_path = model
        return name

    def drop(self, name: str, rows: int = 120, seed: int = 1, text: str | None = None,
             metadata: dict[str, str] | None = None) -> BlobRef:
        """A data file landing in the data container (a new version; the clock moves on a second first)."""
        self.storage.clock.tick()
        ref = BlobRef(self.settings.data_container, name)
        self.storage.put(ref, (text if text is not None else csv_text(rows, seed)).encode(), metadata)
        return ref

    def trained(self, name: str, seed: int = 1) -> Run:
        """A run whose job has finished (its model is in storage), not yet promoted."""
        run = self.app.intake.accept(self.drop(name, seed=seed))
        assert run is not None and run.job_id, run
        self.studio.finish(run.job_id)
        return run

    def run(self, run_id: str) -> Run:
        found = self.ledger.get_run(run_id)
        assert found is not None
        return found

    def outcomes(self, endpoint: str, run_id: str | None = None) -> list[str]:
        return [d.outcome for d in self.ledger.history("default", endpoint) if run_id is None or d.run_id == run_id]


def world(**overrides: str) -> World:
    settings = fake_settings(**overrides)
    storage, ledger, events = FakeBlobStore(settings.rejected_container), FakeLedger(), FakeEvents()
    kind = FakeKind(storage)
    services = Services(settings.targets, {"classic": kind})
    queue = FakeQueue()
    return World(settings, storage, ledger, events, kind, UseCases(settings, storage, ledger, events, services,
                                                                   queue), queue)


def data_text(rows: int = 120, seed: int = 1, **replace: Any) -> str:
    text = csv_text(rows, seed)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text
