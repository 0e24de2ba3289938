"""The rules alone (no storage, no service): routing, the gate, newest wins, rollback choice, run transitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.decisions import (
    ACTIVE_RUN_STATUSES,
    FUNCTION_TIMEOUT_SECONDS,
    INLINE_PROOF_SECONDS,
    RUN_TRANSITIONS,
    IllegalTransition,
    advance,
    check_endpoint_name,
    check_transition,
    find_target,
    model_refused,
    proven_on_queue,
    rollback_choice,
    route,
    spread_over_queue,
    superseded_by,
)
from shared.errors import DataRejected, NotFound, Refused
from shared.gate import Gate
from shared.records import RUN_STATUSES, Current, Deployment, EndpointResult, Run
from shared.settings import Target


def target(name: str = "default", prefix: str = "", endpoints: list[str] | None = None,
           tenants: bool = True) -> Target:
    return Target(name=name, management_url="https://m/workspaces/w/webservices/s", management_key=SecretStr("k"),
                  resource_name="r", endpoints=endpoints or [], data_prefix=prefix, tenant_routing=tenants)


# ---- routing -------------------------------------------------------------------------------------------------
def test_a_tenant_folder_routes_to_that_endpoint_alone():
    where = route([target(endpoints=["a", "b"])], "tenant-a/2024/data.csv")
    assert (where.endpoints, where.tenant) == (["tenant-a"], "tenant-a")


def test_a_top_level_file_routes_to_the_targets_endpoints():
    where = route([target(endpoints=["a", "b"])], "data.csv")
    assert (where.endpoints, where.tenant) == (["a", "b"], None)


def test_without_tenant_routing_a_folder_goes_to_the_targets_endpoints():
    assert route([target(endpoints=["*"], tenants=False)], "x/data.csv").endpoints == ["*"]


def test_the_longest_data_prefix_wins():
    general, special = target("general", endpoints=["g"]), target("special", "vip/", endpoints=["v"], tenants=False)
    assert route([general, special], "vip/file.csv").target.name == "special"
    assert route([general, special], "other.csv").target.name == "general"


@pytest.mark.parametrize(("name", "code"), [("Bad_Tenant/x.csv", "InvalidTenant"), ("data.csv", "NoEndpoints")])
def test_unroutable_files_are_rejected_with_a_code(name, code):
    with pytest.raises(DataRejected) as info:
        route([target()], name)
    assert info.value.code == code


def test_a_file_outside_every_prefix_has_no_target():
    with pytest.raises(DataRejected) as info:
        route([target(prefix="only/", endpoints=["a"])], "elsewhere.csv")
    assert info.value.code == "NoTarget"


def test_endpoint_names_follow_the_service_rule():
    check_endpoint_name("tenant-a1")
    for bad in ("-a", "a-", "A", "a" * 25, "a_b", ""):
        with pytest.raises(Refused):
            check_endpoint_name(bad)


def test_find_target_names_the_missing_one():
    from shared.settings import load_settings

    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                              "RETRAIN_BES_URL": "http://127.0.0.1:1/w/s", "RETRAIN_BES_KEY": "k" * 10,
                              "RETRAIN_MANAGEMENT_URL": "http://127.0.0.1:1/workspaces/w/webservices/s",
                              "RETRAIN_MANAGEMENT_KEY": "k" * 10, "RETRAIN_RESOURCE_NAME": "r"})
    assert find_target(settings, None).name == "default" == find_target(settings, "default").name
    with pytest.raises(NotFound, match="nope"):
        find_target(settings, "nope")


# ---- the gate ------------------------------------------------------------------------------------------------
def test_the_gate_minimum_either_way_round():
    auc = Gate.single("AUC", 0.7)
    assert auc.check({"AUC": 0.7}) is None and auc.check({"AUC": 0.9}) is None
    assert "misses the minimum" in (auc.check({"AUC": 0.69}) or "")
    assert "no 'AUC' metric" in (auc.check({}) or "")
    loss = Gate.single("Log Loss", 0.5)  # a known lower-is-better metric: the number is a maximum
    assert loss.check({"Log Loss": 0.4}) is None and "over the maximum" in (loss.check({"Log Loss": 0.6}) or "")


def test_the_required_improvement_over_the_serving_model():
    assert Gate.single("AUC", 0.7).improvement({"AUC": 0.71}, {"AUC": 0.9}) is None  # off unless set
    gate = Gate.single("AUC", 0.7, min_improvement=0.02)
    assert gate.improvement({"AUC": 0.92}, {"AUC": 0.9}) is None
    assert "does not improve" in (gate.improvement({"AUC": 0.91}, {"AUC": 0.9}) or "")
    assert gate.improvement({"AUC": 0.5}, {}) is None and gate.improvement({}, {"AUC": 0.9}) is None
    loss = Gate.single("Log Loss", 1.0, min_improvement=0.1)
    assert loss.improvement({"Log Loss": 0.3}, {"Log Loss": 0.5}) is None
    assert loss.improvement({"Log Loss": 0.45}, {"Log Loss": 0.5}) is not None


def test_a_gate_over_several_metrics_names_every_rule_a_model_misses():
    gate = Gate.parse({"AUC": {"min": 0.7, "improvement": 0.01}, "Accuracy": {"min": 0.8},
                       "Log Loss": {"max": 0.5}})
    assert gate.metrics == ("AUC", "Accuracy", "Log Loss") and gate.primary == "AUC"
    good = {"AUC": 0.9, "Accuracy": 0.85, "Log Loss": 0.3, "Precision": 0.1}
    assert gate.check(good) is None and gate.gated(good) == {"AUC": 0.9, "Accuracy": 0.85, "Log Loss": 0.3}
    bad = gate.check({"AUC": 0.9, "Accuracy": 0.75, "Log Loss": 0.6}) or ""
    assert "Accuracy 0.7500 misses the minimum 0.8" in bad and "Log Loss 0.6000 is over the maximum 0.5" in bad
    assert "AUC" not in bad
    assert gate.improvement(good, {"AUC": 0.895}) is not None and gate.improvement(good, {"AUC": 0.85}) is None


@pytest.mark.parametrize("value, message", [
    ({}, "names no metric"), ({"AUC": 0.7}, "must be an object"), ({"AUC": {"minimum": 0.7}}, "must be an object"),
    ({"AUC": {"min": "high"}}, "are numbers"), ({"AUC": {"improvement": 0.1}}, "needs a min or a max"),
    ({"AUC": {"min": 0.7, "improvement": -1}}, "not negative")])
def test_a_malformed_gate_is_refused_with_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message):
        Gate.parse(value)


def test_the_gate_settings_old_and_new():
    from shared.settings import SettingsError, load_settings

    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RETRAIN_BES_URL": "http://127.0.0.1:1/w/s",
            "RETRAIN_BES_KEY": "k" * 10, "RETRAIN_MANAGEMENT_URL": "http://127.0.0.1:1/workspaces/w/webservices/s",
            "RETRAIN_MANAGEMENT_KEY": "k" * 10, "RETRAIN_RESOURCE_NAME": "r"}
    old = load_settings({**base, "RETRAIN_GATE_METRIC": "Accuracy", "RETRAIN_GATE_MINIMUM": "0.8"}).gate
    assert old.describe() == [{"metric": "Accuracy", "min": 0.8, "max": None, "improvement": None}]
    new = load_settings({**base, "RETRAIN_GATE": '{"AUC": {"min": 0.7}, "Accuracy": {"min": 0.8}}'}).gate
    assert new.metrics == ("AUC", "Accuracy")
    with pytest.raises(SettingsError, match="RETRAIN_GATE replaces"):
        load_settings({**base, "RETRAIN_GATE": '{"AUC": {"min": 0.7}}', "RETRAIN_GATE_MINIMUM": "0.8"})
    with pytest.raises(SettingsError, match=r"RETRAIN_GATE\['AUC'\] needs a min or a max"):
        load_settings({**base, "RETRAIN_GATE": '{"AUC": {"improvement": 0.1}}'})


# ---- newest wins ---------------------------------------------------------------------------------------------
def test_a_model_from_older_data_is_superseded():
    cur = Current(target="t", endpoint="e", data_time="2026-01-02T00:00:00.000Z")  # a pointer from before orders
    assert superseded_by(Run(id="a", target="t", data_time="2026-01-01T00:00:00.000Z"), cur) is not None
    assert superseded_by(Run(id="b", target="t", data_time="2026-01-03T00:00:00.000Z"), cur) is None
    assert superseded_by(Run(id="c", target="t", data_time="2026-01-01T00:00:00.000Z"),
                         Current(target="t", endpoint="e")) is None


def test_newest_data_wins_is_a_total_order_even_within_one_second():
    second = "2026-01-02T00:00:01.000Z"  # Last-Modified has whole seconds: both files landed "at once"
    big = Run(id="big", target="t", data_time=second, created_at="2026-01-02T00:00:01.100Z")
    small = Run(id="small", target="t", data_time=second, created_at="2026-01-02T00:00:01.300Z")
    serving_small = Current(target="t", endpoint="e", data_time=second, data_order=small.order)
    serving_big = Current(target="t", endpoint="e", data_time=second, data_order=big.order)
    assert superseded_by(big, serving_small) is not None  # the earlier-taken file never replaces the later
    assert superseded_by(small, serving_big) is None
    assert superseded_by(small, serving_small) is None  # a redelivery of what serves is not "older"
    twin = Run(id="twin", target="t", data_time=second, created_at=small.created_at)
    assert (superseded_by(twin, serving_small) is None) != (superseded_by(small, Current(
        target="t", endpoint="e", data_order=twin.order)) is None)  # equal times: the id decides, one way


# ---- rollback choice -----------------------------------------------------------------------------------------
def dep(dep_id: str, outcome: str = "Deployed", model: str | None = None) -> Deployment:
    return Deployment(id=dep_id, target="t", endpoint="e", outcome=outcome, model_path=model or f"models/{dep_id}")


def test_rollback_returns_to_the_newest_good_model_other_than_the_serving_one():
    history = [dep("d4"), dep("d3", "RolledBack"), dep("d2", "Failed"), dep("d1"), dep("d0", "Created")]
    serving = Current(target="t", endpoint="e", deployment_id="d4", model_path="models/d4")
    assert rollback_choice("e", history, serving, None).id == "d1"


def test_rollback_skips_attempts_of_the_model_now_serving():
    history = [dep("d3", model="models/same"), dep("d2", model="models/same"), dep("d1")]
    serving = Current(target="t", endpoint="e", deployment_id="d3", model_path="models/same")
    assert rollback_choice("e", history, serving, None).id == "d1"


def test_consecutive_rollbacks_walk_back_through_history_instead_of_toggling():
    d1, d2, d3 = dep("d1"), dep("d2"), dep("d3")
    history = [d3, d2, d1, dep("d0", "Created")]
    first = rollback_choice("e", history, Current(target="t", endpoint="e", deployment_id="d3",
                                                  model_path="models/d3"), None)
    assert first.id == "d2"
    r1 = Deployment(id="r1", target="t", endpoint="e", outcome="Deployed", operation="rollback",
                    model_path="models/d2", restores="d2")
    history = [r1, *history]
    second = rollback_choice("e", history, Current(target="t", endpoint="e", deployment_id="r1",
                                                   model_path="models/d2"), None)
    assert second.id == "d1"  # not d3, the model the first rollback removed
    r2 = Deployment(id="r2", target="t", endpoint="e", outcome="Deployed", operation="rollback",
                    model_path="models/d1", restores="d1")
    third = rollback_choice("e", [r2, *history], Current(target="t", endpoint="e", deployment_id="r2",
                                                         model_path="models/d1"), None)
    assert third.id == "d0"


def test_rollback_to_a_named_deployment_and_the_refusals():
    history = [dep("d2"), dep("d1"), dep("bad", "Failed")]
    assert rollback_choice("e", history, None, "d1").id == "d1"
    with pytest.raises(NotFound, match="'bad'"):
        rollback_choice("e", history, None, "bad")
    with pytest.raises(Refused) as info:
        rollback_choice("e", [dep("only")], Current(target="t", endpoint="e", deployment_id="only",
                                                    model_path="models/only"), None)
    assert info.value.code == "NothingToRollBack" and info.value.conflict


# ---- outcomes and the run lifecycle --------------------------------------------------------------------------
def test_which_outcomes_blame_the_model():
    assert model_refused(EndpointResult("e", "RolledBack", "smoke failed"))
    assert model_refused(EndpointResult("e", "Failed", "the service refused the model: BadArgument"))
    assert not model_refused(EndpointResult("e", "Failed", "PATCH failed: 503"))
    assert not model_refused(EndpointResult("e", "Deployed"))


def test_every_status_has_its_transitions_and_terminal_ones_have_none_but_the_watchs_rollback():
    """A finished run moves no more - except that a deployed one whose watch found it stopped serving ends
    RolledBack (issue 21's watch after every deployment)."""
    assert set(RUN_TRANSITIONS) == set(RUN_STATUSES)
    for status in RUN_STATUSES:
        after_watch = RUN_TRANSITIONS[status] - ({"RolledBack"} if status in ("Deployed", "PartiallyDeployed")
                                                 else set())
        assert (not after_watch) == (status not in ACTIVE_RUN_STATUSES)


@pytest.mark.parametrize(("now", "new"), [(a, b) for a in RUN_STATUSES for b in RUN_STATUSES])
def test_transitions_follow_the_table(now, new):
    if new == now or new in RUN_TRANSITIONS[now]:
        check_transition(now, new)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(now, new)


def test_advance_moves_a_run_or_refuses():
    run = Run(id="r", target="t")
    advance(run, "Submitted")
    advance(run, "Training")
    advance(run, "Trained")
    advance(run, "Deploying")
    advance(run, "PartiallyDeployed", "Failed: one endpoint refused it")
    with pytest.raises(IllegalTransition):
        advance(run, "Deploying")
    assert run.status == "PartiallyDeployed" and run.error == "Failed: one endpoint refused it"
    assert [t["status"] for t in run.transitions] == ["Submitted", "Training", "Trained", "Deploying",
                                                      "PartiallyDeployed"]
    assert run.transitions[-1]["reason"] == "Failed: one endpoint refused it" and run.transitions[0]["at"]


def test_an_upload_outside_a_tenant_folder_must_name_its_endpoints():
    from shared.decisions import endpoints_override, upload_routing_problem

    targets = [target(endpoints=["*"])]
    assert "outside a tenant folder" in str(upload_routing_problem(targets, "all.csv", None))
    assert upload_routing_problem(targets, "all.csv", ["*"]) is None
    assert upload_routing_problem(targets, "all.csv", ["a", "b"]) is None
    assert upload_routing_problem(targets, "tenant-a/x.csv", None) is None
    assert "folder of endpoint" in str(upload_routing_problem(targets, "tenant-a/x.csv", ["b"]))
    assert endpoints_override(" a, b ,a") == ["a", "b"] and endpoints_override("*") == ["*"]
    assert endpoints_override("") is None and endpoints_override(None) is None
    with pytest.raises(Refused):
        endpoints_override("a,Bad_Name")


def test_a_run_names_at_most_1000_endpoints_more_go_as_star():
    from shared.decisions import endpoints_override
    from shared.targets import Target

    many = ",".join(f"e{i}" for i in range(1001))
    with pytest.raises(Refused) as info:
        endpoints_override(many)
    assert "use *" in str(info.value)
    assert endpoints_override("*") == ["*"] and len(endpoints_override(many.rsplit(",", 1)[0]) or []) == 1000
    with pytest.raises(ValueError, match="at most 1,000"):
        Target(management_url="https://m.example/workspaces/w/webservices/s", management_key="k" * 10,
               resource_name="r", endpoints=many)


# ---- where a fan-out runs ---------------------------------------------------------------------------------------
def test_the_inline_bound_is_half_of_host_jsons_function_timeout():
    hours, minutes, seconds = json.loads((Path(__file__).parents[2] / "host.json").read_text())[
        "functionTimeout"].split(":")
    assert 3600 * int(hours) + 60 * int(minutes) + int(seconds) == FUNCTION_TIMEOUT_SECONDS
    assert INLINE_PROOF_SECONDS == FUNCTION_TIMEOUT_SECONDS / 2


@pytest.mark.parametrize(("mode", "later", "endpoints", "proof", "queued"), [
    ("auto", True, 1, 3600, True),  # Azure ML (20 minutes x 3 operations): queued whatever its size
    ("auto", True, 1, 92, False),  # Studio (classic)'s 2 x 45 s + 2 s: one wave inline
    ("auto", True, 17, 92, True),  # more than one wave of 16
    ("auto", False, 1, 3600, False),  # cannot be proven later: inline
    ("inline", True, 1, 3600, False),
    ("queue", True, 1, 92, True),
])
def test_a_fan_out_goes_on_the_queue_when_one_wave_or_one_proof_would_outlast_the_invocation(
        mode: str, later: bool, endpoints: int, proof: float, queued: bool):
    assert spread_over_queue(mode, later, endpoints, 16, proof) is queued


def test_an_operators_action_is_handed_to_the_queue_only_for_a_long_proof():
    assert proven_on_queue("auto", True, 3600) and proven_on_queue("queue", True, 3600)
    assert not proven_on_queue("queue", True, 92)  # classic's operator actions answer in the call, as before
    assert not proven_on_queue("inline", True, 3600) and not proven_on_queue("auto", False, 3600)
