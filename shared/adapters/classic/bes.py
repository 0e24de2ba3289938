"""The Batch Execution Service client: submit, start, get (poll) and cancel jobs of one endpoint."""

from __future__ import annotations

from shared.adapters.classic.errors import StudioApiError
from shared.adapters.classic.http import StudioHttp
from shared.adapters.classic.models import BatchJobRequest, JobStatus

API_VERSION = "api-version=2.0"


class BesClient:
    """`api_location` = the endpoint's ApiLocation (`.../workspaces/<ws>/services/<guid>`)."""

    def __init__(self, http: StudioHttp, api_location: str, key: str) -> None:
        self.http = http
        self.api_location = api_location.rstrip("/")
        self._key = key

    def _jobs(self, suffix: str = "") -> str:
        return f"{self.api_location}/jobs{suffix}?{API_VERSION}"

    def submit(self, request: BatchJobRequest) -> str:
        """Submit a job (it starts NotStarted); returns the job id. Not retried after an ambiguous timeout."""
        resp = self.http.request("POST", self._jobs(), "submit BES job", self._key,
                                 json_body=request.model_dump(exclude_none=False), idempotent=False)
        job_id = resp.json() if resp.content.strip().startswith(b'"') else resp.text
        job_id = str(job_id).strip().strip('"')
        if not job_id:
            raise StudioApiError(resp.status_code, "EmptyJobId", "BES returned no job id", operation="submit")
        return job_id

    def start(self, job_id: str) -> None:
        try:
            self.http.request("POST", self._jobs(f"/{job_id}/start"), f"start BES job {job_id}", self._key,
                              expect=(200, 202, 204))
        except StudioApiError as exc:
            # A retried start whose first try got through: the job is no longer NotStarted. Fine if it runs.
            if exc.detail_code == "CannotStartJob" and self.get(job_id).StatusCode != "NotStarted":
                return
            raise

    def get(self, job_id: str) -> JobStatus:
        resp = self.http.request("GET", self._jobs(f"/{job_id}"), f"get BES job {job_id}", self._key)
        return JobStatus.model_validate(resp.json())

    def cancel(self, job_id: str) -> None:
        self.http.request("DELETE", self._jobs(f"/{job_id}"), f"cancel BES job {job_id}", self._key,
                          expect=(200, 202, 204))

