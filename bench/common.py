"""What the benchmarks share: the product library wired to a local emulator, and one trained model."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from shared.composition import Retraining
from shared.records import BlobRef, Run
from shared.settings import load_settings
from tools.emulator.census import csv_text
from tools.localdev.appsettings import settings_from_manifest


def library(manifest: dict[str, Any], **overrides: str) -> Retraining:
    """The library against this emulator and its storage, with tables of its own."""
    env = settings_from_manifest(manifest, **{"RETRAIN_ENDPOINTS": "none",
                                              "RETRAIN_TABLE_PREFIX": f"bench{uuid.uuid4().hex[:6]}", **overrides})
    app = Retraining(load_settings(env))
    app.ensure_storage()
    return app


def trained_model(app: Retraining, rows: int = 3000) -> Run:
    """Train one model through the library (upload, accept, BES job); returns its run once the job finished."""
    data = BlobRef(app.settings.data_container, f"bench-{uuid.uuid4().hex[:6]}.csv")
    app.storage.blob.get_blob_client(data.container, data.name).upload_blob(
        csv_text(rows, seed=1, drift=0.7).encode(), overwrite=True)
    run = app.intake.accept(data)
    assert run is not None and run.job_id, run
    bes = app.studio.bes(app.settings.targets[0])
    while bes.get(run.job_id).StatusCode != "Finished":
        time.sleep(0.2)
    return run


class CallCounter:
    """Counts the HTTP tries the library's Studio clients make (retries included)."""

    def __init__(self, app: Retraining) -> None:
        self.calls = 0
        http = app.studio.http
        send = http._once

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return send(*args, **kwargs)

        http._once = counted  # type: ignore[method-assign]


class PeakRss:
    """This process's peak resident memory (MB) while in the block, sampled every `interval` seconds, and the RSS
    when the block began (`before`)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval

    def __enter__(self) -> PeakRss:
        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.before = self.peak = self._proc.memory_info().rss / 2**20

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)
