"""The `azureml` target kind: each target's ARM client (the app's Entra identity: its managed identity in Azure,
the local identity endpoint under `make run`), its training service and its serving target."""

from __future__ import annotations

from typing import Any

from shared.adapters.azureml.arm import Arm
from shared.adapters.azureml.scoring import Scoring
from shared.adapters.azureml.serving import AzureMLServing
from shared.adapters.azureml.training import AzureMLTraining
from shared.ports.blobs import BlobStore
from shared.ports.services import TargetKind
from shared.settings import Settings, Target


class AzureMLKind(TargetKind):
    def __init__(self, settings: Settings, storage: BlobStore, credential: Any, interactive: bool = False) -> None:
        self.settings, self.storage, self.credential = settings, storage, credential
        self.retries = 1 if interactive else 3
        self._arms: dict[str, Arm] = {}

    def arm(self, target: Target) -> Arm:
        if target.name not in self._arms:
            assert target.azureml is not None
            self._arms[target.name] = Arm(target.azureml, self.credential, self.retries,
                                          self.settings.read_timeout_seconds)
        return self._arms[target.name]

    def training(self, target: Target) -> AzureMLTraining:
        return AzureMLTraining(self.settings, target, self.arm(target), self.storage)

    def serving(self, target: Target) -> AzureMLServing:
        arm = self.arm(target)
        return AzureMLServing(target, arm, self.training(target), Scoring(arm, self.credential))
