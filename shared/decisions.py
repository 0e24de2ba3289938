"""The rules, with no I/O: where a file routes, whether a model passes the gate, which model wins a race, which
model a rollback returns to, and which run status may follow which. Use cases ask these; tests check them alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.errors import DataRejected, NotFound, Refused
from shared.records import BlobRef, Current, Deployment, EndpointResult, Run, RunStatus, now_iso
from shared.settings import Settings, Target
from shared.targets import MAX_NAMED_ENDPOINTS

ENDPOINT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$")
MODEL_REFUSED = "the service refused the model"

# ---- run lifecycle ---------------------------------------------------------------------------------------------
# From the file landing to the last endpoint's outcome. A run is never moved along an edge not listed here.
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    "Accepted": frozenset({"Rejected", "Submitted", "Failed", "Cancelled", "Superseded"}),
    "Submitted": frozenset({"Training", "Trained", "Failed", "Cancelled", "Superseded"}),
    "Training": frozenset({"Trained", "Failed", "Cancelled", "Superseded"}),
    "Trained": frozenset({"BelowGate", "AwaitingApproval", "Deploying", "Superseded", "Rejected"}),
    "AwaitingApproval": frozenset({"Deploying", "Rejected", "Superseded", "Cancelled"}),
    "Deploying": frozenset({"Deployed", "PartiallyDeployed", "RolledBack", "Failed", "Superseded", "Rejected",
                            "BelowGate"}),
    "Rejected": frozenset(),
    "BelowGate": frozenset(),
    "Deployed": frozenset({"RolledBack"}),  # its watch found it stopped serving
    "PartiallyDeployed": frozenset({"RolledBack"}),
    "RolledBack": frozenset(),
    "Failed": frozenset(),
    "Superseded": frozenset(),
    "Cancelled": frozenset(),
}
ACTIVE_RUN_STATUSES: tuple[RunStatus, ...] = ("Accepted", "Submitted", "Training", "Trained", "AwaitingApproval",
                                              "Deploying")


class IllegalTransition(ValueError):
    """A run asked to move to a status that may not follow its present one."""


def check_transition(current: RunStatus, new: RunStatus) -> None:
    """Raise IllegalTransition unless a run in `current` may move to `new` (staying put is always allowed)."""
    if new != current and new not in RUN_TRANSITIONS[current]:
        raise IllegalTransition(f"a run that is {current} cannot become {new}")


def advance(run: Run, status: RunStatus, reason: str | None = None) -> None:
    """Move a run to `status` (recording when, and why when it is not a success), or raise IllegalTransition."""
    check_transition(run.status, status)
    if status != run.status:
        step = {"status": status, "at": now_iso()}
        if reason:
            step["reason"] = reason
        run.transitions = [*run.transitions, step]
    if reason is not None:
        run.error = reason
    run.status = status


def final_status(results: Sequence[EndpointResult]) -> RunStatus:
    """What a deployment to many endpoints adds up to: still Deploying while any endpoint is pending; Deployed when
    every endpoint took the model (or served it already); PartiallyDeployed when some did; otherwise what kept
    it from all of them (Superseded, RolledBack, BelowGate for "no improvement", else Failed)."""
    outcomes = [r.outcome for r in results if r.outcome != "Refused"]  # the default endpoint is never patched
    if "Pending" in outcomes:
        return "Deploying"
    served = [o for o in outcomes if o in ("Deployed", "Unchanged")]
    if outcomes and len(served) == len(outcomes):
        return "Deployed"
    if served:
        return "PartiallyDeployed"
    for every, status in (("Superseded", "Superseded"), ("Rejected", "BelowGate")):
        if outcomes and all(o == every for o in outcomes):
            return status  # type: ignore[return-value]
    return "RolledBack" if "RolledBack" in outcomes else "Failed"


# ---- routing -----------------------------------------------------------------------------------------------------
@dataclass
class Route:
    target: Target
    endpoints: list[str]
    tenant: str | None = None


def route(targets: Sequence[Target], name: str, named: list[str] | None = None) -> Route:
    """Which target and endpoints a file (its path inside the container) goes to: the longest matching data prefix;
    under tenant routing `<prefix><tenant>/<file>` goes to endpoint `<tenant>` alone; outside a tenant folder, to the
    endpoints the uploader `named`, else the target's."""
    for target in sorted(targets, key=lambda t: len(t.data_prefix), reverse=True):
        if not name.startswith(target.data_prefix):
            continue
        rest = name[len(target.data_prefix):]
        if "/" in rest and target.tenant_routing:
            tenant = rest.split("/", 1)[0]
            if not ENDPOINT_NAME.match(tenant):
                raise DataRejected("InvalidTenant", f"'{tenant}' is not a valid endpoint name (lower-case "
                                                    "letters, digits and inner hyphens, at most 24)")
            return Route(target, [tenant], tenant)
        if named:
            return Route(target, list(named))
        if not target.endpoints:
            raise DataRejected("NoEndpoints", f"target '{target.name}' lists no endpoints "
                                              "(RETRAIN_ENDPOINTS) for files outside a tenant folder")
        return Route(target, list(target.endpoints))
    raise DataRejected("NoTarget", f"no target takes files at '{name}'")


def unreadable_name(name: str) -> str | None:
    """Why a blob with this name cannot be read back through the storage SDK (URLs drop '.' and '..' segments,
    and '\\' becomes '/'), or None when it can."""
    if "\\" in name:
        return "its name has a backslash"
    if any(part in (".", "..") for part in name.split("/")):
        return "its name has a '.' or '..' segment"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "its name has a control character"
    return None


def check_data_file(name: str, size: int, max_bytes: int) -> None:
    """Raise DataRejected when a training-data file is refused for its name or size, before it is read."""
    if not name.lower().endswith(".csv"):
        raise DataRejected("UnsupportedFileType", "training data must be a .csv file")
    if size > max_bytes:
        raise DataRejected("TooLarge", f"{size} bytes is over RETRAIN_MAX_DATA_BYTES")


def blob_in(container: str, path: str, what: str) -> BlobRef:
    """`path` (`<container>/<name>`) as a blob of `container`; Refused for another container, a malformed path or
    a '..' segment (only this app's own containers are ever read on a caller's word)."""
    try:
        ref = BlobRef.parse(path)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    if ref.container != container or ".." in ref.name.split("/"):
        raise Refused(f"{what} is taken only from the '{container}' container", "OutsideContainer")
    return ref


def find_target(settings: Settings, name: str | None) -> Target:
    """The named target, or the first when none is named."""
    if name is None:
        return settings.targets[0]
    try:
        return settings.target(name)
    except KeyError:
        raise NotFound(f"no target named '{name}'") from None


ENDPOINTS_METADATA = "retrainendpoints"  # blob metadata: which endpoints a top-level file retrains


def endpoints_override(value: str | None) -> list[str] | None:
    """The endpoints a caller named for a file (`a,b` or `*`), checked; None when none were named."""
    if value is None or not value.strip():
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if names == ["*"]:
        return names
    if len(names) > MAX_NAMED_ENDPOINTS:
        raise Refused(f"{len(names)} endpoints named; a run records at most {MAX_NAMED_ENDPOINTS:,} by name - use * "
                      "for every endpoint of the service", "InvalidRequest")
    for name in names:
        check_endpoint_name(name)
    return list(dict.fromkeys(names))


def upload_routing_problem(targets: Sequence[Target], name: str, named: list[str] | None) -> str | None:
    """Why an upload under `name` (with the endpoints the caller `named`) must not go ahead, or None. A file outside
    a tenant folder retrains every endpoint of its target: that must be said explicitly."""
    try:
        where = route(targets, name)
    except DataRejected:
        return None  # it routes nowhere: accepting it records the rejection with its reason
    if where.tenant is None and named is None:
        return (f"'{name}' is outside a tenant folder, so it would retrain every endpoint of target "
                f"'{where.target.name}' ({', '.join(where.endpoints)}): name a tenant (?name=<endpoint>/<file>.csv) "
                "or the endpoints (?endpoints=a,b, or ?endpoints=* for all)")
    if where.tenant is not None and named is not None:
        return f"'{name}' is in the folder of endpoint '{where.tenant}': drop ?endpoints, or upload it outside it"
    return None


def check_endpoint_name(name: str) -> None:
    if not ENDPOINT_NAME.match(name):
        raise Refused("endpoint names have at most 24 characters: lower-case letters, digits and hyphens, "
                      "not at the start or end", "InvalidEndpointName")


# ---- races and rollbacks -----------------------------------------------------------------------------------------
def superseded_by(candidate: Run, current: Current) -> str | None:
    """Newest data wins: a reason when the endpoint already serves a model from newer data, else None. The order
    is total (see `Run.order`), so of two different files one is always the newer, even within one second."""
    if current.data_order:
        newer = candidate.order < current.data_order
    else:  # a pointer written before orders were recorded: its data time alone
        newer = bool(current.data_time) and candidate.data_time < str(current.data_time)
    if newer:
        return f"the endpoint serves a model from newer data ({current.data_time})"
    return None


def rollback_choice(endpoint: str, history: Sequence[Deployment], current: Current | None,
                    to: str | None) -> Deployment:
    """The deployment a rollback of `endpoint` returns to: the named one, else the newest good model older than
    the one now serving. A rollback walks back: when what serves was itself put back by a rollback, the walk goes
    on from the deployment it restored, so consecutive rollbacks step through history instead of toggling.
    `history` is newest first."""
    good = [d for d in history if d.outcome in ("Deployed", "Created") and d.model_path]
    if to is not None:
        chosen = next((d for d in good if d.id == to), None)
        if chosen is None:
            raise NotFound(f"no successful deployment '{to}' on endpoint '{endpoint}'")
        return chosen
    by_id = {d.id: d for d in history}
    position = current.deployment_id if current else None
    walked: set[str] = set()
    while position in by_id and by_id[position].restores and position not in walked:
        walked.add(position)
        position = by_id[position].restores
    at = next((i for i, d in enumerate(history) if d.id == position), -1)
    serving = current.model_path if current else None
    good_ids = {d.id for d in good}
    older = [d for d in history[at + 1:] if d.id in good_ids and d.model_path != serving]
    if not older:
        raise Refused(f"endpoint '{endpoint}' has no earlier model to roll back to", "NothingToRollBack",
                      conflict=True)
    return older[0]


def model_refused(result: EndpointResult) -> bool:
    """The model itself is the problem: the service would not take it (HTTP 400) or could not serve it."""
    return result.outcome == "RolledBack" or (result.outcome == "Failed" and
                                              (result.reason or "").startswith(MODEL_REFUSED))


# ---- where a fan-out runs --------------------------------------------------------------------------------------
FUNCTION_TIMEOUT_SECONDS = 600  # host.json's functionTimeout ("00:10:00"): the host kills an invocation past it
INLINE_PROOF_SECONDS = FUNCTION_TIMEOUT_SECONDS / 2  # a swap whose proof may take longer is never waited for inline
HANDED_OFF = "the swap goes on on the work queue (its proof may outlast an invocation): the run says how it ends"


def spread_over_queue(mode: str, proves_later: bool, endpoints: int, concurrency: int,
                      proof_seconds: float = 0.0) -> bool:
    """Whether work on `endpoints` endpoints goes on the work queue (RETRAIN_FANOUT_MODE) rather than running in the
    invocation that starts it. Only a target whose swaps are proven by later looks can be queued. "auto": when the
    work is more than one wave of `concurrency` endpoints - inline, each further wave would wait another switch
    time in the same invocation -, or when one swap's proof may take longer than INLINE_PROOF_SECONDS (the
    target's `proof_seconds`: Azure ML's deployment create and traffic steps, 20 minutes each by default), whatever
    the number of endpoints: an invocation killed mid-swap leaves half-moved traffic for a retry. One wave of quick
    proofs (Studio (classic): 2 switch times) finishes in its invocation as it always did."""
    if mode == "inline" or not proves_later:
        return False
    return mode == "queue" or endpoints > concurrency or proof_seconds > INLINE_PROOF_SECONDS


def proven_on_queue(mode: str, proves_later: bool, proof_seconds: float) -> bool:
    """Whether an operator's action (one endpoint, over HTTP or from a watch) is handed to the work queue rather
    than proven in the call: when its fan-out would be queued for the proof's length alone (a call that waited it
    would outlast the HTTP front end's 230 s and the invocation). Else it is carried out in the call, as before."""
    return mode != "inline" and proves_later and proof_seconds > INLINE_PROOF_SECONDS


def watch_over_queue(mode: str, endpoints: int, concurrency: int) -> bool:
    """Whether a reconcile pass sends a watched deployment's checks as work-queue messages rather than making them
    one after another itself: the queued modes ("auto", "queue") and more endpoints than one wave of
    `concurrency` (10,000 checks in one timer invocation would outlast it; a few are quicker made in place)."""
    return mode != "inline" and endpoints > concurrency

