"""Request-response scoring (RRS) of one endpoint: the smoke request that verifies a model swap."""

from __future__ import annotations

from typing import Any

from shared.adapters.classic.http import StudioHttp


class ScoringClient:
    def __init__(self, http: StudioHttp, api_location: str, key: str) -> None:
        self.http = http
        self.api_location = api_location.rstrip("/")
        self._key = key

    def score(self, rows: list[dict[str, Any]], max_attempts: int | None = None) -> list[dict[str, str]]:
        """Score rows (classic table format); returns one dict per row with every output column."""
        names = list(rows[0]) if rows else []
        body = {"Inputs": {"input1": {"ColumnNames": names, "Values": [[str(r.get(n, "")) for n in names]
                                                                       for r in rows]}},
                "GlobalParameters": {}}
        resp = self.http.request("POST", f"{self.api_location}/execute?api-version=2.0&details=true",
                                 "score", self._key, json_body=body, max_attempts=max_attempts)
        output = resp.json()["Results"]["output1"]
        if isinstance(output, list):  # swagger format
            return [{k: str(v) for k, v in row.items()} for row in output]
        value = output["value"]
        return [dict(zip(value["ColumnNames"], row, strict=False)) for row in value["Values"]]
