"""How the two local stand-ins keep their state on disk: the Studio (classic) emulator's `state.json`
(tools/emulator/state.py) and the Azure ML stand-in's `azureml.json` (tools/azureml/state.py).

`StateFile` owns the writing of one such file: whole and atomically (a `.tmp` beside it, made private with mode
0600 because the state holds keys, then renamed over the file), by a background loop at most every `save_interval`
seconds while it is marked dirty, and once more on stop. What goes in the file (and how it is read back) is each
stand-in's own: a subclass gives `dump()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path


class StateFile(ABC):
    """One stand-in's JSON state file (`path` None: in memory only, nothing is written)."""

    def __init__(self, path: Path | None, save_interval: float, log: logging.Logger, what: str) -> None:
        self.path = path
        self.save_interval = save_interval
        self._log = log
        self._what = what  # for the log line when a save fails: "could not save <what>"
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None

    @abstractmethod
    def dump(self) -> str:
        """The state as the JSON text the file holds."""

    def mark_dirty(self) -> None:
        self._dirty = True

    def save_now(self) -> None:
        if self.path is None:
            return
        self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(self.dump())
        os.chmod(tmp, 0o600)  # it holds keys (the workspace's, the endpoints')
        os.replace(tmp, self.path)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.save_interval)
            if self._dirty:
                try:
                    self.save_now()
                except OSError:
                    self._log.exception("could not save %s", self._what)

    def start_saver(self) -> None:
        if self.path is not None and self._saver is None:
            self._saver = asyncio.get_running_loop().create_task(self._save_loop())

    async def stop_saver(self) -> None:
        """Stop the loop, then save once more (whether or not anything changed)."""
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        self.save_now()
