"""The status page as HTML, from a snapshot of what the app knows (no I/O here): when it was made; every endpoint with
the model it serves, since when, from which run and who forced it, with a chart (inline SVG, `status_chart`) of
the gate metric over its newest deployments on a time axis with the gate's line - rollbacks, rejections and forced
deployments marked - and a link to older ones; the last runs with their state, metric, how many endpoints they
reached and reasons; runs awaiting approval; the newest rejections. Times are relative to when the page was made.
No external assets, no JavaScript."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from shared.records import Deployment, Run
from shared.status_chart import FORCED, MARKS, chart, relative


@dataclass
class EndpointStatus:
    target: str
    name: str
    serving: str | None
    since: str | None
    run_id: str | None
    history: list[Deployment] = field(default_factory=list)  # the newest, newest first
    deployments: list[dict[str, Any]] = field(default_factory=list)  # a service's deployments (Azure ML)
    history_total: int | None = None  # the whole history's length (None: `history` is all of it)
    forced_by: str | None = None  # who forced the deployment serving now past the gate


@dataclass
class StatusSnapshot:
    metric: str  # the gate's first metric: charted
    endpoints: list[EndpointStatus]
    endpoint_count: int
    runs: list[Run]
    waiting: list[Run]
    rejected: list[dict[str, Any]]
    gated: tuple[str, ...] = ()  # every gated metric: shown beside runs
    made_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    gate_line: float | None = None  # the gate's bound on its first metric: drawn on each chart


def _metrics(values: dict[str, float], gated: tuple[str, ...]) -> str:
    """The gated metrics of a run, as one cell."""
    shown = [f"{escape(m)} {values[m]:.4f}" for m in gated if m in values]
    return f"<td>{', '.join(shown)}</td>" if shown else "<td>&ndash;</td>"


def _cell(value: object) -> str:
    return f"<td>{escape(str(value)) if value not in (None, '') else '&ndash;'}</td>"


def _reached(run: Run) -> str:
    """How many of a run's endpoints serve its model (Deployed or Unchanged) of how many it went to."""
    total = sum(run.outcomes.values())
    if not total:
        return "<td>&ndash;</td>"
    reached = run.outcomes.get("Deployed", 0) + run.outcomes.get("Unchanged", 0)
    return f'<td class="reached">{reached} of {total}</td>'


def _older(endpoint: EndpointStatus) -> str:
    """'newest 30 of 2,000 deployments' with a link to older ones (the endpoint's API answer, a page at a time)."""
    shown = len(endpoint.history)
    total = endpoint.history_total if endpoint.history_total is not None else shown
    if total <= shown or not endpoint.history:
        return ""
    query = urlencode({"target": endpoint.target, "historyLimit": 100, "before": endpoint.history[-1].created_at})
    return (f'<div class="older">newest {shown} of {total:,} deployments - <a href="endpoints/'
            f'{quote(endpoint.name)}?{escape(query)}">older</a></div>')


def _endpoint_row(e: EndpointStatus, snapshot: StatusSnapshot) -> str:
    forced = f'<div class="forced">forced by {escape(e.forced_by)}</div>' if e.forced_by else ""
    return (f"<tr><td>{escape(e.target)}/{escape(e.name)}</td><td class=\"model\">{escape(e.serving or '-')}"
            f"{forced}{_deployments(e)}</td><td>{relative(e.since, snapshot.made_at)}</td>"
            f"{_cell(e.run_id[:12] if e.run_id else None)}"
            f"<td>{chart(e.history, snapshot.metric, snapshot.gate_line)}{_older(e)}</td></tr>")


def _deployments(endpoint: EndpointStatus) -> str:
    """An Azure ML endpoint's deployments: traffic and the model each serves."""
    if not endpoint.deployments:
        return ""
    rows = "".join(f"<li>{escape(str(d.get('name')))}: {escape(str(d.get('traffic', 0)))} % - "
                   f"{escape(str(d.get('modelPath') or d.get('model') or '?'))} "
                   f"({escape(str(d.get('provisioningState') or '?'))})</li>" for d in endpoint.deployments)
    return f'<ul class="deployments">{rows}</ul>'


def render(snapshot: StatusSnapshot) -> str:
    now = snapshot.made_at
    legend = "".join(f'<span style="color:{c}">&#9632; {escape(label)}</span> ' for _, c, label in MARKS.values())
    legend += f'<span style="color:{FORCED}">&#9675; forced past the gate (who: hover)</span> '
    if snapshot.gate_line is not None:
        legend += f'<span style="color:#c62828">- - the gate: {escape(snapshot.metric)} {snapshot.gate_line:g}</span>'
    endpoint_rows = "".join(_endpoint_row(e, snapshot) for e in snapshot.endpoints)
    run_rows = "".join(
        f'<tr>{_cell(r.id[:12])}<td class="status {escape(r.status)}">{escape(r.status)}</td>'
        f"{_cell(r.data_path or r.model_path)}{_cell(r.trigger + (' by ' + r.caller if r.caller else ''))}"
        f"{_metrics(r.metrics, snapshot.gated)}{_reached(r)}<td>{relative(r.updated_at, now)}</td>"
        f"{_cell(r.error)}</tr>" for r in snapshot.runs)
    waiting_rows = "".join(
        f"<tr>{_cell(r.id)}{_metrics(r.metrics, snapshot.gated or (snapshot.metric,))}<td>"
        + "; ".join(f"{escape(str(x.get('endpoint')))} serves {escape(str(x.get('servingModel')))} "
                    f"({escape(snapshot.metric)} {escape(str(x.get('servingMetric')))})" for x in r.endpoint_results)
        + f"</td><td><code>POST /api/runs/{escape(r.id)}/approve</code> or <code>/reject</code></td></tr>"
        for r in snapshot.waiting) or '<tr><td colspan="4">none</td></tr>'
    rejected_rows = "".join(f"<tr>{_cell(f['name'])}{_cell(f.get('code'))}<td>{relative(f.get('at'), now)}</td></tr>"
                            for f in snapshot.rejected) or '<tr><td colspan="3">none</td></tr>'
    shown = (f"{len(snapshot.endpoints)} of {snapshot.endpoint_count}" if snapshot.endpoint_count >
             len(snapshot.endpoints) else str(snapshot.endpoint_count))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Retraining status</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}} table{{border-collapse:collapse;margin-bottom:2rem}}
td,th{{border-bottom:1px solid #ddd;padding:.35rem .6rem;text-align:left;vertical-align:middle;font-size:.9rem}}
th{{background:#f5f5f5}} td.model{{word-break:break-all;max-width:22rem}}
.Deployed{{color:#2e7d32}} .Failed,.RolledBack,.Rejected{{color:#c62828}}
.BelowGate,.Superseded,.Cancelled{{color:#ef6c00}} code{{font-size:.85rem}}
time,td.reached{{white-space:nowrap}} .forced{{color:#6a1b9a;font-size:.8rem}} .older{{font-size:.8rem;color:#555}}
p.made{{color:#555;font-size:.85rem}}
</style></head><body>
<h1>Retraining status</h1>
<p class="made">Made {escape(now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))}; times below are relative to it
(hover for the exact time).</p>
<h2>Endpoints ({shown})</h2><p>{legend}</p>
<table id="endpoints"><tr><th>endpoint</th><th>serves</th><th>since</th><th>from run</th>
<th>{escape(snapshot.metric)} over its deployments</th></tr>{endpoint_rows}</table>
<h2>Awaiting approval</h2>
<table id="waiting"><tr><th>run</th><th>gated metrics</th><th>now serving</th><th>decide</th></tr>
{waiting_rows}</table>
<h2>Last runs</h2>
<table id="runs"><tr><th>run</th><th>state</th><th>file</th><th>trigger</th><th>gated metrics</th>
<th>endpoints reached</th><th>updated</th><th>reason</th></tr>
{run_rows}</table>
<h2>Files in rejected/</h2>
<table id="rejected"><tr><th>file</th><th>code</th><th>rejected</th></tr>{rejected_rows}</table>
</body></html>
"""
