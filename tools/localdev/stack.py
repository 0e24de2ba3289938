"""The whole local stack: Azurite, the emulator (its storage-events source subscribed to the app's Event Grid blob
webhooks) and the function app under `func start` (when Core Tools is on PATH) or devhost.

Two kinds of target: `classic` (the app retrains the emulator's Studio (classic) web service) and `azureml` (the app's
one target is the Azure ML stand-in's workspace, reached over HTTPS with the local managed identity, and the
workspace's RunCompleted / RunStatusChanged events are subscribed to the app's `azureml_job_event` trigger).

Used by `make run` (persistent state in `.local/`, the ports of the last run reused when free), `make demo` and the
end-to-end tests (a throw-away folder each).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from shared.adapters.ledger import table_names
from tools.localdev.appsettings import (
    azureml_settings,
    identity_settings,
    local_settings_json,
    settings_from_manifest,
)
from tools.localdev.azurite import PROJECT_ROOT, Azurite
from tools.localdev.emulator import EmulatorProcess
from tools.localdev.ports import free_port, port_is_free
from tools.localdev.process import spawn, stop
from tools.localdev.tls import LocalTls

# Settings the stack owns: they point at this run's Azurite and emulator, so they are passed to the host's
# environment (which wins over local.settings.json, with Core Tools as with devhost).
STACK_KEYS = ("AzureWebJobsStorage", "RETRAIN_BES_URL", "RETRAIN_BES_KEY", "RETRAIN_MANAGEMENT_URL",
              "RETRAIN_MANAGEMENT_KEY", "RETRAIN_RESOURCE_NAME", "RETRAIN_EVENTGRID_ENDPOINT", "RETRAIN_EVENTGRID_KEY")
CONTAINERS = ("training-data", "models", "rejected")
TARGETS = ("classic", "azureml")
# What an azureml stack owns instead of the classic service's settings (which it leaves out: nothing of Studio's).
AZUREML_KEYS = ("RETRAIN_TARGETS", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CLIENT_ID", "REQUESTS_CA_BUNDLE")
CLASSIC_ONLY = ("RETRAIN_BES_URL", "RETRAIN_BES_KEY", "RETRAIN_MANAGEMENT_URL", "RETRAIN_MANAGEMENT_KEY",
                "RETRAIN_RESOURCE_NAME")
JOB_EVENTS = ("Microsoft.MachineLearningServices.RunCompleted", "Microsoft.MachineLearningServices.RunStatusChanged")
JOB_EVENT_FUNCTION = "azureml_job_event"
# The census row the app smoke-scores a new Azure ML deployment with (directly, then through the endpoint).
SMOKE_ROW = {"age": "39", "workclass": "State-gov", "fnlwgt": "77516", "education": "Bachelors",
             "education-num": "13", "marital-status": "Never-married", "occupation": "Adm-clerical",
             "relationship": "Not-in-family", "race": "White", "sex": "Male", "capital-gain": "2174",
             "capital-loss": "0", "hours-per-week": "40", "native-country": "United-States"}


def blob_webhooks(base_url: str) -> dict[str, str]:
    """container -> webhook URL, for every Event Grid blob trigger of function_app, read from its metadata (in a
    fresh process: a FunctionApp can be indexed only once per process)."""
    env = {**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true",
           "RETRAIN_RECONCILE_SCHEDULE": "0 */5 * * * *"}
    out = subprocess.run([sys.executable, "-m", "tools.devhost", "--list", "--settings", os.devnull], cwd=PROJECT_ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"function_app does not index: {out.stderr.strip()}")
    hooks = {}
    for spec in json.loads(out.stdout):
        if spec["trigger"] == "blobTrigger" and spec["source"] == "EventGrid" and spec["container"]:
            hooks[spec["container"]] = f"{base_url}/runtime/webhooks/blobs?functionName=Host.Functions.{spec['name']}"
    return hooks



def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds keys or a connection string with the account key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # also when it existed with wider bits

@dataclass
class Stack:
    workdir: Path
    functions_port: int = 0  # 0: a free port
    persistent: bool = False  # keep Azurite and emulator state in workdir across runs
    use_func: bool | None = None  # None: Core Tools when `func` is on PATH, else devhost
    settings_overrides: dict[str, str] = field(default_factory=dict)
    emulator_args: list[str] = field(default_factory=list)
    # The real service serves a PATCHed model after ~30 s; locally a shorter but non-zero switch keeps the
    # verification honest (it must prove the new model answers) without slowing the story down.
    propagation_seconds: float = 2.0
    local_settings: Path | None = None  # write the app's settings here if the file is absent
    progress: Any = None  # callable(str) for progress lines
    # Identity mode: Azurite over HTTPS in OAuth mode, the emulator's managed identity endpoint, a topic that takes
    # only Entra ID tokens - and no key in any of the app's settings (as in Azure).
    identity: bool = False
    # "classic" or "azureml" (the app's one target is the Azure ML stand-in's workspace; the emulator serves HTTPS,
    # as ARM must be, with a CA of the workdir's own; Azurite stays plain HTTP unless identity mode)
    target: str = "classic"
    azureml: dict[str, Any] = field(default_factory=dict)  # the azureml target's own settings (traffic_steps, ...)
    tls: LocalTls | None = None
    azurite: Azurite | None = None
    emulator: EmulatorProcess | None = None
    host_proc: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    functions_url: str = ""
    host_kind: str = ""

    def _switch_seconds(self) -> str:
        """How long verification may wait for the local switch: a margin over the emulator's propagation (none
        when the switch is instant, as a test stack may ask)."""
        return f"{self.propagation_seconds * 1.5 + 1:g}" if self.propagation_seconds else "0"

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)

    @property
    def state_path(self) -> Path:
        return self.workdir / "stack.json"

    def _previous(self) -> dict[str, Any]:
        if self.persistent and self.state_path.exists():
            try:
                return dict(json.loads(self.state_path.read_text()))
            except ValueError:
                return {}
        return {}

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        previous = self._previous().get("ports", {})
        try:
            self._start(previous)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, previous: dict[str, int]) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.identity or self.target == "azureml":
            self.tls = LocalTls.make(self.workdir / "tls")
        azurite_tls = self.tls if self.identity else None
        self._say("starting Azurite (blob, queue, table)" + (" over HTTPS, OAuth on" if azurite_tls else ""))
        self.azurite = Azurite(self.workdir / "azurite", blob_port=previous.get("blob", 0),
                               queue_port=previous.get("queue", 0), table_port=previous.get("table", 0),
                               extra_args=[] if self.persistent else ["--inMemoryPersistence"],
                               tls=azurite_tls).start()
        # The port asked for, else the one used last time (like the other ports), else any free one: so the
        # emulator's subscriptions (replaced by name) always point at the live host.
        port = next((p for p in (self.functions_port, previous.get("functions")) if p and port_is_free("127.0.0.1", p)),
                    0) or free_port()
        self.functions_url = f"http://127.0.0.1:{port}"
        emulator_port = previous.get("emulator", 0)
        if not emulator_port or not port_is_free("127.0.0.1", emulator_port):
            emulator_port = free_port()
        self._say("starting the emulator (Studio (classic) and the Azure ML stand-in)"
                  + (" over HTTPS" if self.tls else ""))
        subscribe = [f"--subscribe={c}={url}" for c, url in blob_webhooks(self.functions_url).items()]
        tls_args = [] if self.tls is None else ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
        if self.identity:
            tls_args += ["--topic-auth", "entra"]
        self.emulator = EmulatorProcess(
            self.azurite.connection_string, self.workdir / "emulator",
            args=["--port", str(emulator_port), "--events-poll-seconds", "0.25",
                  "--propagation-seconds", f"{self.propagation_seconds:g}", *subscribe, *tls_args,
                  *self.emulator_args],
            data_dir=self.workdir / "emulator" / "data" if self.persistent else None,
            env=self.tls.environ() if self.tls else None).start()
        self.settings = settings_from_manifest(self.emulator.manifest, self.azurite.connection_string,
                                               **{"RETRAIN_RECONCILE_SCHEDULE": "0 */5 * * * *",
                                                  "RETRAIN_VERIFY_SWITCH_SECONDS": self._switch_seconds(),
                                                  "RETRAIN_VERIFY_POLL_SECONDS": "0.5"})
        if self.identity:
            assert self.tls is not None
            self.settings = identity_settings(self.settings, self.azurite, self.emulator.manifest, self.tls)
        if self.target == "azureml":
            assert self.tls is not None
            self.settings = {k: v for k, v in azureml_settings(self.settings, self.emulator.manifest,
                                                               str(self.tls.ca), **self._azureml_target()).items()
                             if k not in CLASSIC_ONLY}
            self.settings.setdefault("RETRAIN_SMOKE_ROW", json.dumps(SMOKE_ROW))
        self.settings.update(self.settings_overrides)
        self._prepare_storage()
        if self.local_settings is None:  # a private settings file, so a developer's own file cannot leak in
            self.local_settings = self.workdir / "local.settings.json"
            write_private(self.local_settings, local_settings_json(self.settings) + "\n")
        elif not self.local_settings.exists():
            write_private(self.local_settings, local_settings_json(self.settings) + "\n")
            self._say(f"wrote {self.local_settings} from the emulator manifest")
        self._start_host(port)
        if self.target == "azureml":
            self.subscribe_job_events()
        self._write_state(port, emulator_port)

    def _azureml_target(self) -> dict[str, Any]:
        """The azureml target's settings: a deployment wait that fits the stand-in's timings (2 minutes for the fast
        default; the target's own default, 20, when they are slowed down - `realistic` creates a deployment in 8
        minutes), then the caller's own."""
        slowed = "realistic" in self.emulator_args or "--azureml-time" in self.emulator_args
        return {"deployment_timeout_minutes": 20 if slowed else 2, **self.azureml}

    def subscribe_job_events(self, **options: Any) -> dict[str, Any]:
        """Subscribe the app's Event Grid trigger to the workspace's job events (RunCompleted, RunStatusChanged), as
        the deploy's Event Grid system topic does in Azure; named, so a restart on another port replaces it.
        `options`: the emulator's subscription fields (e.g. max_attempts)."""
        assert self.emulator is not None
        url = f"{self.functions_url}/runtime/webhooks/eventgrid?functionName={JOB_EVENT_FUNCTION}"
        resp = requests.post(f"{self.emulator.manifest['admin_url']}/storage-events/subscriptions", timeout=30,
                             json={"name": JOB_EVENT_FUNCTION, "endpoint": url, "event_types": list(JOB_EVENTS),
                                   **options}, verify=str(self.tls.ca) if self.tls else True)
        resp.raise_for_status()
        self._say(f"subscribed {JOB_EVENT_FUNCTION} to the workspace's job events")
        return dict(resp.json())

    def _prepare_storage(self) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableServiceClient
        from azure.storage.blob import BlobServiceClient

        assert self.azurite is not None
        verify: Any = str(self.tls.ca) if self.tls and self.identity else True
        blobs = BlobServiceClient.from_connection_string(self.azurite.connection_string, connection_verify=verify)
        for name in CONTAINERS:
            with contextlib.suppress(ResourceExistsError):
                blobs.create_container(name)
        tables = TableServiceClient.from_connection_string(self.azurite.connection_string,
                                                           connection_verify=verify)
        prefix = self.settings.get("RETRAIN_TABLE_PREFIX", "retrain")
        for table in table_names(prefix):
            tables.create_table_if_not_exists(table)

    def _start_host(self, port: int) -> None:
        env = {**os.environ, **self.settings}
        func_bin = shutil.which("func") if self.use_func is not False else None
        if self.use_func and func_bin is None:
            raise RuntimeError("Core Tools (func) is not on PATH")
        log_path = self.workdir / "functions.log"
        if func_bin is not None:
            self.host_kind = "func start (Core Tools)"
            cmd = [func_bin, "start", "--port", str(port)]
            project_settings = PROJECT_ROOT / "local.settings.json"
            if not project_settings.exists():  # Core Tools reads the worker runtime from the project's file
                # (an azureml stack's settings stay out of it: a classic `make run` would read its RETRAIN_TARGETS)
                values = {"FUNCTIONS_WORKER_RUNTIME": "python"} if self.target == "azureml" else self.settings
                write_private(project_settings, local_settings_json(values) + "\n")
                self._say(f"wrote {project_settings} for Core Tools")
            # The Python worker must run in this venv (where requirements.txt is installed).
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = sys.prefix
            env["languageWorkers__python__defaultExecutablePath"] = sys.executable
        else:
            self.host_kind = "devhost (Core Tools not found)"
            cmd = [sys.executable, "-m", "tools.devhost", "--port", str(port), "--settings", str(self.local_settings)]
        self._say(f"starting the function app under {self.host_kind}")
        self.host_proc = spawn(cmd, log_path=log_path, cwd=PROJECT_ROOT, env=env)
        deadline = time.monotonic() + 120
        while True:
            if self.host_proc.poll() is not None:
                raise RuntimeError(f"the function host exited with {self.host_proc.returncode}:\n"
                                   f"{self.host_log_tail()}")
            try:
                if requests.get(f"{self.functions_url}/admin/host/status", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the function host did not come up in 120 s:\n{self.host_log_tail()}")
            time.sleep(0.2)

    def restart_host(self, **changes: str | None) -> None:
        """Start the function host again (after it died or was killed), with settings changed (None removes one);
        the same port, storage and emulator."""
        if self.host_proc is not None and self.host_proc.poll() is None:
            stop(self.host_proc, grace=15)
        for key, value in changes.items():
            if value is None:
                self.settings.pop(key, None)
            else:
                self.settings[key] = value
        assert self.local_settings is not None
        write_private(self.local_settings, local_settings_json(self.settings) + "\n")
        port = int(self.functions_url.rsplit(":", 1)[1])
        self._start_host(port)

    def host_log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "functions.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _write_state(self, functions_port: int, emulator_port: int) -> None:
        assert self.azurite is not None and self.emulator is not None
        state = {"functions_url": self.functions_url,
                 "storage_connection_string": self.azurite.connection_string,
                 "emulator_manifest": str(self.emulator.manifest_path),
                 "host": self.host_kind,
                 "identity": self.identity,
                 "target": self.target,
                 "ca_bundle": str(self.tls.ca) if self.tls else None,
                 "ports": {"blob": self.azurite.blob_port, "queue": self.azurite.queue_port,
                           "table": self.azurite.table_port, "functions": functions_port,
                           "emulator": emulator_port}}
        write_private(self.state_path, json.dumps(state, indent=2) + "\n")

    def stop(self) -> None:
        if self.host_proc is not None:
            stop(self.host_proc, grace=15)
            self.host_proc = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
