"""A dry run of a retrain: validate the data, route it, and report which endpoints it would retrain and which
model each serves now - starting nothing, storing nothing, moving nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared.decisions import (
    ENDPOINTS_METADATA,
    blob_in,
    check_data_file,
    endpoints_override,
    route,
    upload_routing_problem,
)
from shared.errors import DataRejected, NotFound, Refused
from shared.ports.blobs import BlobStore
from shared.ports.ledger import Ledger
from shared.ports.services import Services
from shared.settings import Settings, Target
from shared.validation import DataSpec, validate_csv

MAX_LISTED = 100  # endpoints listed in a dry run's answer (the count is always given)


@dataclass
class DryRun:
    """What a retrain would do, doing nothing."""

    settings: Settings
    storage: BlobStore
    ledger: Ledger
    services: Services

    def of_blob(self, path: str) -> dict[str, Any]:
        ref = blob_in(self.settings.data_container, path, "training data")
        if not self.storage.exists(ref):
            raise NotFound(f"{ref.path} does not exist")
        props = self.storage.info(ref)
        named = endpoints_override(props.metadata.get(ENDPOINTS_METADATA))
        return self._report(ref.name, lambda: self.storage.chunks(ref, etag=props.etag), props.size, named)

    def of_upload(self, name: str, data: bytes, endpoints: str | None) -> dict[str, Any]:
        named = endpoints_override(endpoints)
        problem = upload_routing_problem(self.settings.targets, name, named)
        if problem is not None:
            raise Refused(problem, "TenantRequired")
        return self._report(name, lambda: iter([data]), len(data), named)

    def _report(self, name: str, chunks: Callable[[], Iterable[bytes]], size: int,
                named: list[str] | None) -> dict[str, Any]:
        s = self.settings
        answer: dict[str, Any] = {"dryRun": True, "name": f"{s.data_container}/{name}", "bytes": size}
        try:
            check_data_file(name, size, s.max_data_bytes)
            where = route(s.targets, name, named)
            protected = self.services.serving(where.target).protected_endpoint()
            if protected is not None and set(where.endpoints) == {protected}:  # as intake refuses it
                raise DataRejected("DefaultEndpoint", f"the file routes to '{protected}', the default endpoint, which "
                                   "is never retrained (it follows the experiment)")
            if where.tenant is not None and self.services.serving(where.target).endpoint(where.tenant) is None:
                raise DataRejected("NoSuchEndpoint", f"the file routes to endpoint '{where.tenant}', which does not "
                                                     f"exist on target '{where.target.name}'")
            report = validate_csv(chunks(), DataSpec.from_settings(s))
        except DataRejected as exc:
            return {**answer, "valid": False, "problem": exc.as_reason()}
        names = self.services.resolve(where.target, named or where.endpoints)
        return {**answer, "valid": True, "rows": report.rows, "labels": report.label_counts,
                "target": where.target.name, "endpointCount": len(names),
                "endpoints": [self._serving(where.target.name, where.target, n) for n in names[:MAX_LISTED]]}

    def _serving(self, target_name: str, target: Target, name: str) -> dict[str, Any]:
        ep = self.services.serving(target).endpoint(name)
        cur = self.ledger.current(target_name, name)
        return {"endpoint": name, "exists": ep is not None, "serving": ep.model_path if ep else None,
                "runId": cur.run_id if cur else None, "deploymentId": cur.deployment_id if cur else None}
