"""Which training service and serving target each configured target uses: a target names its kind (`classic`,
...), and the kind builds its adapters. A new kind is a new adapter package registered in the composition root;
the use cases do not change."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping

from shared.errors import NotFound
from shared.ports.serving import ServingTarget
from shared.ports.training import TrainingService
from shared.settings import Target


class TargetKind(ABC):
    """Builds the adapters of targets of one kind."""

    @abstractmethod
    def training(self, target: Target) -> TrainingService: ...

    @abstractmethod
    def serving(self, target: Target) -> ServingTarget: ...

    def close(self) -> None:  # noqa: B027 - most kinds hold nothing to release
        """Release what the adapters hold (connections)."""


class Services:
    """Each target's training service and serving target, built once by the target's kind."""

    def __init__(self, targets: list[Target], kinds: Mapping[str, TargetKind]) -> None:
        unknown = sorted({t.kind for t in targets} - set(kinds))
        if unknown:
            raise NotFound(f"no adapters for target kind(s) {', '.join(unknown)}; known: {', '.join(sorted(kinds))}")
        self.targets = {t.name: t for t in targets}
        self.kinds = dict(kinds)
        self._built: dict[tuple[str, str], TrainingService | ServingTarget] = {}
        self._lock = threading.Lock()

    def _target(self, target: Target | str) -> Target:
        return self.targets[target] if isinstance(target, str) else target

    def training(self, target: Target | str) -> TrainingService:
        t = self._target(target)
        with self._lock:
            built = self._built.get(("training", t.name))
            if built is None:
                built = self._built[("training", t.name)] = self.kinds[t.kind].training(t)
        assert isinstance(built, TrainingService)
        return built

    def serving(self, target: Target | str) -> ServingTarget:
        t = self._target(target)
        with self._lock:
            built = self._built.get(("serving", t.name))
            if built is None:
                built = self._built[("serving", t.name)] = self.kinds[t.kind].serving(t)
        assert isinstance(built, ServingTarget)
        return built

    def resolve(self, target: Target | str, endpoints: list[str]) -> list[str]:
        """`["*"]` is every endpoint of the target but the protected one; other lists are as they are."""
        return self.serving(target).endpoint_names() if endpoints == ["*"] else endpoints

    def close(self) -> None:
        for kind in self.kinds.values():
            kind.close()
