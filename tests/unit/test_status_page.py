"""The status page's HTML alone: a chart per endpoint with each kind of deployment marked, everything escaped."""

from __future__ import annotations

from shared.records import Deployment, Run
from shared.status_page import EndpointStatus, StatusSnapshot, chart, render


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
