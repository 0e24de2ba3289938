"""A minimal client written only from the API reference and the emulator manifest (no project code), so the
contract tests check the emulator against the reference rather than against our own client."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient


class Studio:
    def __init__(self, manifest: dict[str, Any]) -> None:
        self.m = manifest
        self.http = requests.Session()
        self.ws = manifest["workspace_id"]
        self.token = manifest["workspace_token"]
        self.storage = manifest["storage"]["connection_string"]

    # management
    def mgmt_url(self, path: str = "") -> str:
        return f"{self.m['management_url']}/workspaces/{self.ws}/webservices{path}"

    def ep_url(self, name: str, service: str | None = None) -> str:
        return self.mgmt_url(f"/{service or self.m['predictive_service']['id']}/endpoints/{name}")

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.token}", "Accept": "application/json"}

    def mgmt(self, method: str, url: str, key: str | None = None, **kw: Any) -> requests.Response:
        return self.http.request(method, url, headers=self.auth(key), timeout=30, **kw)

    def create_endpoint(self, name: str | None = None, **body: Any) -> dict[str, Any]:
        name = name or f"ep{uuid.uuid4().hex[:10]}"
        r = self.mgmt("PUT", self.ep_url(name), json={"Description": "test", "ThrottleLevel": "Low", **body})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def patch_model(self, name: str, location: dict[str, Any], resource: str | None = None,
                    key: str | None = None) -> requests.Response:
        res_name = self.m["predictive_service"]["resource_name"] if resource is None else resource
        body = {"Resources": [{"Name": res_name,
                               "Location": location}]}
        return self.mgmt("PATCH", self.ep_url(name), key=key, json=body)

    # BES on the training service
    def bes(self, method: str, path: str = "", key: str | None = None, **kw: Any) -> requests.Response:
        url = f"{self.m['training_service']['api_location']}/jobs{path}"
        return self.http.request(method, url, params={"api-version": "2.0"}, timeout=30,
                                 headers=self.auth(key or self.m["training_service"]["api_key"]), **kw)

    def upload(self, container: str, name: str, data: bytes | str) -> None:
        svc = BlobServiceClient.from_connection_string(self.storage)
        with contextlib.suppress(Exception):
            svc.create_container(container)
        svc.get_blob_client(container, name).upload_blob(data, overwrite=True)

    def sas(self, relative_location: str, seconds: float = 600) -> str:
        """A read-only SAS for one blob (negative `seconds`: already expired)."""
        from datetime import UTC, datetime, timedelta

        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        parts = dict(p.split("=", 1) for p in self.storage.strip(";").split(";"))
        container, blob = relative_location.split("/", 1)
        expiry = datetime.now(UTC) + timedelta(seconds=seconds)
        return "?" + generate_blob_sas(parts["AccountName"], container, blob, account_key=parts["AccountKey"],
                                       permission=BlobSasPermissions(read=True), expiry=expiry,
                                       start=min(expiry, datetime.now(UTC)) - timedelta(hours=1))

    def download(self, ref: dict[str, Any]) -> bytes:
        r = requests.get(ref["BaseLocation"] + ref["RelativeLocation"] + ref["SasBlobToken"], timeout=30)
        r.raise_for_status()
        return r.content

    def training_body(self, data_blob: str, run: str) -> dict[str, Any]:
        return {
            "Inputs": {"input1": {"ConnectionString": self.storage, "RelativeLocation": data_blob}},
            "Outputs": {"output1": {"ConnectionString": self.storage,
                                    "RelativeLocation": f"models/{run}/model.ilearner"},
                        "output2": {"ConnectionString": self.storage,
                                    "RelativeLocation": f"models/{run}/evaluation.csv"}},
            "GlobalParameters": {},
        }

    def run_training(self, data_blob: str, run: str | None = None, timeout: float = 60) -> dict[str, Any]:
        run = run or uuid.uuid4().hex[:8]
        r = self.bes("POST", json=self.training_body(data_blob, run))
        assert r.status_code == 200, r.text
        job_id = r.json()
        assert self.bes("POST", f"/{job_id}/start").status_code == 204
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.bes("GET", f"/{job_id}").json()
            if status["StatusCode"] in ("Finished", "Failed", "Cancelled"):
                return dict(status, job_id=job_id)
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} did not finish")

    # RRS
    def score(self, api_location: str, key: str, rows: list[dict[str, Any]]) -> requests.Response:
        names = list(rows[0])
        body = {"Inputs": {"input1": {"ColumnNames": names, "Values": [[r[n] for n in names] for r in rows]}},
                "GlobalParameters": {}}
        return self.http.post(f"{api_location}/execute", params={"api-version": "2.0", "details": "true"},
                              headers=self.auth(key), json=body, timeout=30)


def error_codes(resp: requests.Response) -> tuple[str, str | None]:
    err = resp.json()["error"]
    details = err.get("details") or [{}]
    return err["code"], details[0].get("code")
