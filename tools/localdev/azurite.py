"""Start Azurite (from the project's pinned npm install) on free loopback ports with its own data folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tools.localdev.ports import free_port, port_is_free, wait_for_port
from tools.localdev.process import spawn, stop
from tools.localdev.tls import LocalTls

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary() -> Path:
    local = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return local
    found = shutil.which("azurite")
    if found:
        return Path(found)
    raise FileNotFoundError("Azurite is not installed: run `make deps` (npm ci) first")


def connection_string(blob_port: int, queue_port: int, table_port: int, host: str = "127.0.0.1",
                      scheme: str = "http") -> str:
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={scheme}://{host}:{blob_port}/{ACCOUNT_NAME};"
        f"QueueEndpoint={scheme}://{host}:{queue_port}/{ACCOUNT_NAME};"
        f"TableEndpoint={scheme}://{host}:{table_port}/{ACCOUNT_NAME};"
    )


@dataclass
class Azurite:
    """A running Azurite: blob, queue and table services on loopback. Use as a context manager."""

    data_dir: Path
    host: str = "127.0.0.1"
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    tls: LocalTls | None = None  # HTTPS with this certificate, and Entra ID tokens accepted (`--oauth basic`)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def connection_string(self) -> str:
        """With the account key: for the platform's side (setup, the emulator), never for the app in OAuth mode."""
        return connection_string(self.blob_port, self.queue_port, self.table_port, self.host, self.scheme)

    def service_uri(self, service: str) -> str:
        """`https://127.0.0.1:<port>/devstoreaccount1` of "blob", "queue" or "table" (path-style, as Azurite)."""
        port = {"blob": self.blob_port, "queue": self.queue_port, "table": self.table_port}[service]
        return f"{self.scheme}://{self.host}:{port}/{ACCOUNT_NAME}"

    def start(self, timeout: float = 60.0, attempts: int = 3) -> Azurite:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        wanted = (self.blob_port, self.queue_port, self.table_port)
        for attempt in range(attempts):
            if attempt == 0 and all(wanted) and all(port_is_free(self.host, p) for p in wanted):
                self.blob_port, self.queue_port, self.table_port = wanted  # the ports of the last run, still free
            else:
                self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
            self.proc = spawn(
                [str(azurite_binary()),
                 "--blobHost", self.host, "--blobPort", str(self.blob_port),
                 "--queueHost", self.host, "--queuePort", str(self.queue_port),
                 "--tableHost", self.host, "--tablePort", str(self.table_port),
                 *([] if "--inMemoryPersistence" in self.extra_args else ["--location", str(self.data_dir)]),
                 "--skipApiVersionCheck", "--disableTelemetry",
                 "--silent", "--loose", *self._oauth_args(), *self.extra_args],
                log_path=self.data_dir / "azurite.log",
                env={**os.environ, **self.tls.environ()} if self.tls else None,
            )
            proc = self.proc
            try:
                for port in (self.blob_port, self.queue_port, self.table_port):
                    wait_for_port(self.host, port, timeout, alive=lambda p=proc: p.poll() is None)
                return self
            except (RuntimeError, TimeoutError):
                stop(proc)
                if attempt == attempts - 1:
                    raise  # a port taken between picking and binding: try other ports
        return self

    def _oauth_args(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--oauth", "basic", "--cert", str(self.tls.cert), "--key", str(self.tls.key)]

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
