"""What the operator reads, on the fakes: an endpoint and its history, the endpoint list, runs, health, the dry run
(which changes nothing) and the status page's snapshot."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from shared.errors import NotFound, Refused
from shared.records import BlobRef, Deployment, iso
from shared.usecases.views import run_view
from tests.fakes.world import World, data_text, world
from tests.unit.usecases.helpers import land

CREATED = "experiment/model.ilearner"
SECRETS = ("management-key-for-fakes", "bes-key-for-fakes", "sig=")


def deployed(w: World, endpoint: str = "acme") -> str:
    run = w.trained(f"{endpoint}/d.csv")
    land(w, run)
    return run.id


# ---- views ---------------------------------------------------------------------------------------------------------
def test_an_endpoint_shows_what_serves_the_ledgers_pointer_and_its_history_without_secrets():
    w = world()
    w.endpoint("acme")
    run_id = deployed(w)
    view = w.app.views.endpoint(None, "acme")
    assert (view["name"], view["target"], view["kind"], view["isDefault"]) == ("acme", "default", "classic", False)
    assert view["model"]["relativeLocation"] == f"models/{run_id}/model.ilearner"
    assert view["current"]["runId"] == run_id and "leaseOwner" not in view["current"]
    assert [(d["operation"], d["outcome"]) for d in view["history"]] == [("promote", "Deployed"),
                                                                         ("create", "Created")]
    assert not any(secret in str(view) for secret in SECRETS)
    assert w.app.views.endpoint(None, "default")["isDefault"] is True
    with pytest.raises(NotFound):
        w.app.views.endpoint(None, "ghost")
    with pytest.raises(NotFound):
        w.app.views.endpoint("no-such-target", "acme")


def test_the_endpoint_list_names_every_endpoint_with_its_run():
    w = world()
    w.endpoint("acme")
    w.endpoint("beta")
    run_id = deployed(w, "acme")
    listed = {e["name"]: e for e in w.app.views.endpoints()}
    assert set(listed) == {"acme", "beta", "default"}
    assert listed["acme"]["runId"] == run_id and listed["acme"]["model"] == f"models/{run_id}/model.ilearner"
    assert listed["beta"]["runId"] is None and listed["beta"]["deploymentId"] == "create"
    assert listed["default"]["isDefault"] and listed["default"]["deploymentId"] is None


def test_runs_are_listed_newest_first_filtered_by_status_and_shown_without_claims():
    w = world()
    w.endpoint("acme")
    bad = w.app.intake.accept(w.drop("acme/bad.csv", text="age\n1\n"))
    good_id = deployed(w)
    assert bad is not None
    assert [r.id for r in w.app.views.runs()] == [good_id, bad.id]
    assert [r.id for r in w.app.views.runs(("Rejected",))] == [bad.id]
    assert [r.id for r in w.app.views.runs(limit=1)] == [good_id]
    with pytest.raises(Refused) as info:
        w.app.views.runs(("Finished",))
    assert info.value.code == "InvalidRequest"
    shown = run_view(w.app.views.run(good_id))
    assert shown["status"] == "Deployed" and "claimedBy" not in shown and "smokeRow" not in shown
    for missing in ("no-such-run", "../etc", "a" * 200):
        with pytest.raises(NotFound):
            w.app.views.run(missing)


def test_health_reports_each_service_and_degrades_when_one_fails():
    w = world()
    health = w.app.views.health()
    assert health["status"] == "ok" and health["checks"]["storage"] == {"ok": True}
    assert health["checks"]["fake:default"]["ok"] is True and health["targets"] == ["default"]
    assert health["eventGrid"] == "not configured"
    w.studio.fail("health")
    degraded = w.app.views.health()
    assert degraded["status"] == "degraded" and degraded["checks"]["fake:default"]["ok"] is False


def test_health_says_when_the_ledger_cannot_be_read(monkeypatch):
    w = world()

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise ConnectionError("the table service is down")

    monkeypatch.setattr(w.ledger, "list_runs", broken)
    health = w.app.views.health()
    assert health["status"] == "degraded" and health["checks"]["storage"] == {"ok": False,
                                                                               "error": "ConnectionError"}


# ---- dry run: changes nothing --------------------------------------------------------------------------------------
def snapshot(w: World) -> tuple[object, ...]:
    return (copy.deepcopy(w.storage.blobs), w.ledger.writes, len(w.ledger.runs), list(w.events.published),
            list(w.events.waiting), len(w.studio.jobs), [c for c in w.studio.calls if c[0] != "endpoint"])


def test_a_dry_run_of_a_blob_validates_and_routes_and_changes_nothing():
    w = world()
    w.endpoint("acme")
    run_id = deployed(w)
    ref = w.drop("acme/next.csv", rows=150)
    before = snapshot(w)
    answer = w.app.dry_run.of_blob(ref.path)
    assert snapshot(w) == before
    assert answer["dryRun"] and answer["valid"] and answer["rows"] == 150 and answer["target"] == "default"
    assert answer["endpointCount"] == 1
    assert answer["endpoints"] == [{"endpoint": "acme", "exists": True, "serving": f"models/{run_id}/model.ilearner",
                                    "runId": run_id, "deploymentId": f"run-{run_id}"}]
    assert sum(answer["labels"].values()) == 150


def test_a_dry_run_of_bad_data_says_why_and_moves_nothing():
    w = world()
    w.endpoint("acme")
    ref = w.drop("acme/bad.csv", text="age,workclass\n39,State-gov\n")
    before = snapshot(w)
    answer = w.app.dry_run.of_blob(ref.path)
    assert answer["valid"] is False and answer["problem"]["code"] == "MissingColumns"
    assert snapshot(w) == before and w.storage.exists(ref)
    nowhere = w.app.dry_run.of_upload("ghost/x.csv", b"age\n1\n", None)
    assert nowhere["valid"] is False and nowhere["problem"]["code"] == "NoSuchEndpoint"
    default = w.app.dry_run.of_upload("default/x.csv", data_text(120).encode(), None)  # issue 21: it passed
    assert default["valid"] is False and default["problem"]["code"] == "DefaultEndpoint"
    assert snapshot(w) == before
    with pytest.raises(NotFound):
        w.app.dry_run.of_blob("training-data/acme/missing.csv")
    with pytest.raises(Refused):
        w.app.dry_run.of_blob("models/acme/bad.csv")


def test_a_dry_run_of_an_upload_stores_nothing_and_keeps_the_tenant_rule():
    w = world(RETRAIN_ENDPOINTS="*")
    w.endpoint("acme")
    w.endpoint("beta")
    before = snapshot(w)
    with pytest.raises(Refused) as info:
        w.app.dry_run.of_upload("top.csv", data_text(120).encode(), None)
    assert info.value.code == "TenantRequired"
    answer = w.app.dry_run.of_upload("top.csv", data_text(120).encode(), "*")
    assert answer["valid"] and answer["endpointCount"] == 2
    assert [e["endpoint"] for e in answer["endpoints"]] == ["acme", "beta"]
    assert all(e["serving"] == CREATED and e["runId"] is None for e in answer["endpoints"])
    assert snapshot(w) == before and not w.storage.names("training-data")


# ---- the status page ---------------------------------------------------------------------------------------------
def test_the_status_snapshot_shows_endpoints_runs_waiting_runs_and_rejected_files():
    w = world(RETRAIN_APPROVAL="manual")
    w.endpoint("acme")
    w.endpoint("beta")
    waiting = w.trained("acme/d.csv")
    land(w, waiting)
    bad = w.app.intake.accept(w.drop("beta/bad.csv", text="age\n1\n"))
    assert bad is not None
    snap = w.app.status.snapshot()
    assert snap.metric == "AUC" and snap.endpoint_count == 2
    shown = {e.name: e for e in snap.endpoints}
    assert set(shown) == {"acme", "beta"}  # not the default endpoint
    assert shown["acme"].serving == CREATED and shown["acme"].run_id is None and shown["acme"].since is not None
    assert [d.operation for d in shown["acme"].history] == ["create"]
    assert {r.id for r in snap.runs} == {waiting.id, bad.id}
    assert [r.id for r in snap.waiting] == [waiting.id]
    assert [(r["name"], r["code"]) for r in snap.rejected] == [("training-data/beta/bad.csv", "MissingColumns")]
    page = w.app.status.html()
    assert "acme" in page and waiting.id in page and "MissingColumns" in page
    assert not any(secret in page for secret in SECRETS)


def test_the_status_snapshot_of_a_deployed_endpoint_says_since_when_and_from_which_run():
    w = world()
    w.endpoint("acme")
    run_id = deployed(w)
    [acme] = w.app.status.snapshot().endpoints
    attempt = w.ledger.get_deployment("default", "acme", f"run-{run_id}")
    assert attempt is not None and (acme.run_id, acme.since) == (run_id, attempt.created_at)
    assert acme.serving == str(BlobRef("models", f"{run_id}/model.ilearner").path)


# ---- at scale (issue 21: 2,000 deployments made a 340 KB page and an 814 KB answer) --------------------------------
def long_history(w: World, endpoint: str = "acme", count: int = 2000) -> list[str]:
    """`count` attempts on an endpoint, one a minute, some forced, some rolled back; their times, oldest first."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = []
    for i in range(count):
        when = iso(start + timedelta(minutes=i))
        times.append(when)
        w.ledger.add_deployment(Deployment(
            id=f"d{i:05d}", target="default", endpoint=endpoint, outcome="RolledBack" if i % 7 == 3 else "Deployed",
            run_id=f"{i:032x}", model_path=f"models/{i:032x}/model.ilearner", metric=0.7 + (i % 50) / 200,
            metrics={"AUC": 0.7 + (i % 50) / 200}, forced=i % 11 == 5, caller="dave" if i % 11 == 5 else None,
            created_at=when))
    return times


def test_an_endpoints_history_is_paged_newest_first_with_a_link_to_older_ones():
    w = world()
    w.endpoint("acme")
    long_history(w)
    newest_first = [d.created_at for d in w.ledger.history("default", "acme")]  # its creation, then the 2,000
    answer = w.app.views.endpoint(None, "acme")
    assert len(json.dumps(answer)) < 40_000 and len(answer["history"]) == 20 and answer["historyTotal"] == 2001
    assert [d["createdAt"] for d in answer["history"]] == newest_first[:20]
    assert answer["historyNext"] == f"/api/endpoints/acme?historyLimit=20&before={quote(newest_first[19], safe='')}"
    older = w.app.views.endpoint(None, "acme", history_limit=500, before=newest_first[19])
    assert [d["createdAt"] for d in older["history"]] == newest_first[20:520] and older["historyNext"]
    last = w.app.views.endpoint("default", "acme", history_limit=500, before=newest_first[-3])
    assert [d["createdAt"] for d in last["history"]] == newest_first[-2:] and last["historyNext"] is None


def test_the_status_page_stays_small_with_2000_deployments_and_links_to_the_rest():
    w = world()
    w.endpoint("acme")
    long_history(w)
    page = w.app.status.html()
    assert len(page.encode()) < 60_000, len(page.encode())
    assert "newest 30 of 2,001 deployments" in page and 'href="endpoints/acme?target=default&amp;historyLimit=100' \
        in page
    assert page.count('class="mark ') <= 30 and 'class="gate"' in page and 'class="time-axis"' in page
    assert w.storage.listed_pages == 1  # rejected/: one page of its index
