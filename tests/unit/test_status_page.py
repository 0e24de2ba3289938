"""The status page's HTML alone: a chart per endpoint with each kind of deployment marked, everything escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shared.records import Deployment, Run
from shared.status_chart import chart, relative
from shared.status_page import EndpointStatus, StatusSnapshot, render


def dep(i: int, outcome: str, metric: float | None, operation: str = "promote") -> Deployment:
    return Deployment(id=f"d{i}", target="t", endpoint="e", outcome=outcome, metric=metric, operation=operation,
                      created_at=f"2026-01-0{i}T00:00:00.000Z", model_path=f"models/{i}")


def test_the_chart_marks_deployments_rollbacks_and_rejections():
    history = [dep(5, "Deployed", 0.83, "rollback"), dep(4, "RolledBack", 0.9), dep(3, "Rejected", 0.6),
               dep(2, "Deployed", 0.83), dep(1, "Created", None)]
    svg = chart(history, "AUC")
    assert svg.startswith("<svg") and svg.count('class="mark') == 4
    for kind in ("Deployed", "RolledBack", "Rejected", "rollback"):
        assert f'class="mark {kind}"' in svg
    assert "<polyline" in svg and "0.900" in svg  # the scale runs to the highest metric
    assert "no AUC recorded yet" in chart([dep(1, "Created", None)], "AUC")


def test_the_page_lists_everything_and_escapes_what_it_shows():
    run = Run(id="r" * 32, target="t", status="RolledBack", data_path="training-data/<b>x</b>.csv",
              error="RolledBack: <script>alert(1)</script>")
    waiting = Run(id="w1", target="t", status="AwaitingApproval", metrics={"AUC": 0.91},
                  endpoint_results=[{"endpoint": "e", "servingModel": "models/2", "servingMetric": "0.83"}])
    page = render(StatusSnapshot("AUC", [EndpointStatus("t", "e<i>", "models/2", "2026-01-02", "r1",
                                                        [dep(2, "Deployed", 0.83)])], 1, [run], [waiting],
                                 [{"name": "training-data/bad.csv", "code": "MissingColumns", "at": "2026"}]))
    assert "<script>" not in page and "&lt;script&gt;" in page and "e&lt;i&gt;" in page
    assert 'id="endpoints"' in page and 'id="runs"' in page and 'id="waiting"' in page and 'id="rejected"' in page
    assert "POST /api/runs/w1/approve" in page and "MissingColumns" in page and "<svg" in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # no external assets
    assert "<script" not in page


# ---- issue 21: at a glance ---------------------------------------------------------------------------------------
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(**ago: float) -> str:
    return (NOW - timedelta(**ago)).isoformat().replace("+00:00", "Z")


def test_the_chart_has_a_time_axis_and_the_gate_line():
    history = [Deployment(id=f"d{i}", target="t", endpoint="e", outcome="Deployed", metric=0.8 + i / 100,
                          created_at=at(days=10 - day)) for i, day in enumerate((0, 1, 9))][::-1]
    svg = chart(history, "AUC", gate=0.75)
    assert 'class="time-axis"' in svg and svg.count('class="tick"') == 3
    assert ">2026-02-19<" in svg and ">2026-02-28<" in svg  # its first and last days
    xs = [float(m) for m in re.findall(r'<circle class="mark Deployed" cx="([0-9.]+)"', svg)]
    assert (xs[1] - xs[0]) * 7 < (xs[2] - xs[1]) * 1.2  # placed by time: 1 day, then 8 days
    assert 'class="gate"' in svg and "gate 0.75" in svg
    below = chart([Deployment(id="x", target="t", endpoint="e", outcome="Deployed", metric=0.9,
                              created_at=at(days=1))], "AUC", gate=0.5)
    gate_y = float(re.search(r'class="gate" x1="\d+" y1="([0-9.]+)"', below).group(1))  # type: ignore[union-attr]
    assert 0 < gate_y < 130  # a gate far below the values is still drawn inside the chart


def test_forced_deployments_are_marked_with_who_forced_them():
    history = [Deployment(id="f", target="t", endpoint="e", outcome="Deployed", metric=0.6, forced=True,
                          caller="dave@contoso.com", created_at=at(hours=1)),
               Deployment(id="d", target="t", endpoint="e", outcome="Deployed", metric=0.8, created_at=at(days=1))]
    svg = chart(history, "AUC", gate=0.7)
    assert svg.count('class="forced"') == 1 and "forced by dave@contoso.com" in svg
    page = render(StatusSnapshot("AUC", [EndpointStatus("t", "e", "models/f", at(hours=1), "r1", history,
                                                        forced_by="dave@contoso.com")], 1, [], [], [],
                                 made_at=NOW, gate_line=0.7))
    assert '<div class="forced">forced by dave@contoso.com</div>' in page


def test_the_page_says_when_it_was_made_and_times_are_relative_without_wrapping():
    runs = [Run(id=f"r{i}", target="t", status="Training", updated_at=when)
            for i, when in enumerate((at(seconds=30), at(minutes=90), at(hours=30), at(days=40), at(days=800)))]
    page = render(StatusSnapshot("AUC", [], 0, runs, [], [], made_at=NOW))
    assert "Made 2026-03-01 12:00:00 UTC" in page
    for words in ("30 s ago", "1 h ago", "30 h ago", "40 d ago", "2 y ago"):
        assert f">{words}</time>" in page, words
    assert 'title="2026-03-01 10:30:00 UTC"' in page  # the exact time on hover
    assert "time,td.reached{white-space:nowrap}" in page
    assert relative(at(minutes=-5), NOW).endswith(">in 5 min</time>") and relative(None, NOW) == "&ndash;"


def test_a_deployed_runs_metric_and_how_many_endpoints_it_reached_are_shown():
    run = Run(id="r" * 32, target="t", status="PartiallyDeployed", metrics={"AUC": 0.84},
              outcomes={"Deployed": 3, "Unchanged": 1, "RolledBack": 2}, updated_at=at(minutes=2))
    page = render(StatusSnapshot("AUC", [], 0, [run], [], [], gated=("AUC",), made_at=NOW))
    assert "AUC 0.8400" in page and '<td class="reached">4 of 6</td>' in page


def test_a_long_history_is_charted_newest_first_with_a_link_to_older_ones():
    history = [Deployment(id=f"d{i}", target="t", endpoint="e one", outcome="Deployed", metric=0.8,
                          created_at=at(hours=i)) for i in range(30)]
    page = render(StatusSnapshot("AUC", [EndpointStatus("t", "e one", "m", None, None, history,
                                                        history_total=2000)], 1, [], [], [], made_at=NOW))
    assert "newest 30 of 2,000 deployments" in page
    assert f'href="endpoints/e%20one?target=t&amp;historyLimit=100&amp;before={history[-1].created_at}' \
        .replace(":", "%3A") in page
