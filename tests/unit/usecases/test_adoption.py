"""Adopting an endpoint the app did not create (issue 20): before its first change the app records what it serves
as its baseline, so the first rollback returns to it; views say which endpoints the app manages."""

from __future__ import annotations

from tests.fakes.world import world
from tests.unit.usecases.helpers import land


def test_an_endpoint_made_outside_the_app_is_adopted_before_its_first_change_and_a_rollback_returns_to_it():
    w = world()
    original = w.studio.endpoints["default"].model_path  # made in the portal: it serves the experiment's model
    w.studio.add_endpoint("legacy", original)
    assert w.app.views.endpoint(None, "legacy")["managed"] is False
    assert [e["managed"] for e in w.app.views.endpoints() if e["name"] == "legacy"] == [False]
    run = w.trained("legacy/data.csv")
    assert [e.outcome for e in land(w, run).endpoints] == ["Deployed"]
    history = w.ledger.history("default", "legacy")
    assert [(d.id, d.operation, d.outcome, d.model_path) for d in history][-1] == ("adopted", "adopt", "Created",
                                                                                   original)
    assert w.app.views.endpoint(None, "legacy")["managed"] is True
    assert w.app.operations.rollback(None, "legacy").outcome == "Deployed"
    assert w.studio.endpoints["legacy"].model_path == original


def test_an_endpoint_the_app_created_is_not_adopted_again_and_one_serving_nothing_has_no_baseline():
    w = world()
    w.endpoint("mine")
    run = w.trained("mine/data.csv")
    land(w, run)
    assert [d.operation for d in w.ledger.history("default", "mine")] == ["promote", "create"]
    w.studio.add_endpoint("empty", None)
    land(w, w.trained("empty/data.csv", seed=2))
    assert [d.operation for d in w.ledger.history("default", "empty")] == ["promote"]
