"""`python -m tools.migrate_ledger` without storage: an identity-mode settings file works as the host would run it
(its Values are the environment: the identity endpoint and the CA bundle reach the SDKs), and a problem is one line
on stderr with a non-zero exit, never a traceback (issue 21)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from tests.fakes.world import BASE_SETTINGS
from tools import migrate_ledger

IDENTITY = {"AzureWebJobsStorage": "", "AzureWebJobsStorage__accountName": "devstoreaccount1",
            "AzureWebJobsStorage__tableServiceUri": "https://127.0.0.1:1/devstoreaccount1",
            "AzureWebJobsStorage__blobServiceUri": "https://127.0.0.1:1/devstoreaccount1",
            "AzureWebJobsStorage__credential": "managedidentity", "AzureWebJobsStorage__clientId": "client-1",
            "IDENTITY_ENDPOINT": "https://127.0.0.1:2/msi/token", "IDENTITY_HEADER": "header-1",
            "AZURE_CLIENT_ID": "client-1", "REQUESTS_CA_BUNDLE": "/tmp/local-ca.pem"}


def settings_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {**BASE_SETTINGS, **values}}))
    return path


class FakeLedger:
    """Stands in for TableLedger: records the environment it was built in; fails when told to."""

    seen: dict[str, str | None] = {}
    fail: BaseException | None = None

    def __init__(self, settings: Any, credential: Any) -> None:
        type(self).seen = {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER",
                                                          "REQUESTS_CA_BUNDLE", "AZURE_CLIENT_ID")}
        self.index = self
        self.runs = type("Runs", (), {"table_name": "retrainRuns"})()

    def ready(self) -> bool:
        if self.fail is not None:
            raise self.fail
        return False

    def migrate(self, progress: Any) -> int:
        progress(3)
        return 3


@pytest.fixture
def fake_ledger(monkeypatch: pytest.MonkeyPatch) -> type[FakeLedger]:
    monkeypatch.setattr(migrate_ledger, "TableLedger", FakeLedger)
    monkeypatch.setattr(FakeLedger, "fail", None)
    for key in IDENTITY:
        monkeypatch.delenv(key, raising=False)
    return FakeLedger


def test_an_identity_mode_settings_file_reaches_the_sdks_through_the_environment(tmp_path, fake_ledger, capsys):
    """It failed in identity mode: the file's identity endpoint and CA bundle never reached the credential."""
    assert migrate_ledger.main(["--settings", str(settings_file(tmp_path, **IDENTITY))]) == 0
    assert fake_ledger.seen == {"IDENTITY_ENDPOINT": IDENTITY["IDENTITY_ENDPOINT"], "IDENTITY_HEADER": "header-1",
                                "REQUESTS_CA_BUNDLE": "/tmp/local-ca.pem", "AZURE_CLIENT_ID": "client-1"}
    assert "done - 3 run(s) in retrainRuns indexed" in capsys.readouterr().err
    assert "IDENTITY_ENDPOINT" not in os.environ  # as it was before the command


@pytest.mark.parametrize("failure", [
    ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
                              "Attempted credentials:\n\tEnvironmentCredential: ..."),
    ServiceRequestError("<urllib3.connection.HTTPSConnection object>: Failed to establish a new connection"),
    RuntimeError("anything else\nover lines"),
])
def test_a_problem_is_one_line_and_a_non_zero_exit_not_a_traceback(tmp_path, fake_ledger, capsys, failure):
    fake_ledger.fail = failure
    assert migrate_ledger.main(["--settings", str(settings_file(tmp_path, **IDENTITY))]) == 1
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("migrate_ledger: could not migrate the ledger in https://127.0.0.1:1")
    assert type(failure).__name__ in said[0] and "Traceback" not in err


@pytest.mark.parametrize("content", ["not json", json.dumps({"Values": "x"}), json.dumps({"Values": {}})])
def test_a_bad_settings_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "local.settings.json"
    path.write_text(content)
    assert migrate_ledger.main(["--settings", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("migrate_ledger: ") and "Traceback" not in err
    assert migrate_ledger.main(["--settings", str(tmp_path / "missing.json")]) == 2
