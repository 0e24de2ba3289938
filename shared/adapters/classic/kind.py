"""The `classic` target kind: a Studio (classic) training web service (BES) and predictive web service, over one
pooled HTTP client per retry policy that calls only the configured hosts."""

from __future__ import annotations

from shared.adapters.classic.clients import StudioClients
from shared.adapters.classic.http import HttpPolicy
from shared.adapters.classic.serving import ClassicServing
from shared.adapters.classic.training import ClassicTraining
from shared.ports.blobs import BlobStore
from shared.ports.services import TargetKind
from shared.settings import Settings, Target


class ClassicKind(TargetKind):
    def __init__(self, settings: Settings, storage: BlobStore, policy: HttpPolicy | None = None) -> None:
        self.settings, self.storage = settings, storage
        self.studio = StudioClients(settings, policy)

    def training(self, target: Target) -> ClassicTraining:
        return ClassicTraining(self.settings, target, self.studio, self.storage)

    def serving(self, target: Target) -> ClassicServing:
        return ClassicServing(self.settings, target, self.studio, self.storage, self.training(target))

    def close(self) -> None:
        self.studio.close()
