"""The status page as HTML, from a snapshot of what the app knows (no I/O here): every endpoint with the model
it serves, since when and from which run, with a chart (inline SVG) of the gate metric over its deployments -
rollbacks and rejections marked; the last runs with their state and reasons; runs awaiting approval; the files
in rejected/. No external assets, no JavaScript."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from shared.records import Deployment, Run

MARKS = {  # outcome -> (shape, colour, label)
    "Deployed": ("circle", "#2e7d32", "deployed"),
    "Created": ("circle", "#607d8b", "created"),
    "RolledBack": ("cross", "#c62828", "rolled back (did not serve)"),
    "Rejected": ("triangle", "#ef6c00", "rejected by the gate"),
    "rollback": ("diamond", "#1565c0", "operator rollback"),
}


@dataclass
class EndpointStatus:
    target: str
    name: str
    serving: str | None
    since: str | None
    run_id: str | None
    history: list[Deployment] = field(default_factory=list)  # newest first
    deployments: list[dict[str, Any]] = field(default_factory=list)  # a service's deployments (Azure ML)


@dataclass
class StatusSnapshot:
    metric: str  # the gate's first metric: charted
    endpoints: list[EndpointStatus]
    endpoint_count: int
    runs: list[Run]
    waiting: list[Run]
    rejected: list[dict[str, Any]]
    gated: tuple[str, ...] = ()  # every gated metric: shown beside runs


def _metrics(values: dict[str, float], gated: tuple[str, ...]) -> str:
    """The gated metrics of a run, as one cell."""
    shown = [f"{escape(m)} {values[m]:.4f}" for m in gated if m in values]
    return f"<td>{', '.join(shown)}</td>" if shown else "<td>&ndash;</td>"


def _cell(value: object) -> str:
    return f"<td>{escape(str(value)) if value not in (None, '') else '&ndash;'}</td>"


def chart(history: list[Deployment], metric: str, width: int = 300, height: int = 110) -> str:
    """The gate metric over an endpoint's deployments (oldest left), as inline SVG."""
    points = [d for d in reversed(history) if d.metric is not None or d.operation == "rollback"
              or d.outcome in ("RolledBack", "Rejected")]
    values = [d.metric for d in points if d.metric is not None]
    title = f"<title>{escape(metric)} over the deployments of this endpoint</title>"
    if not values:
        return (f'<svg class="chart" width="{width}" height="{height}" role="img">{title}<text x="10" y="{height // 2}"'
                f' font-size="12" fill="#777">no {escape(metric)} recorded yet</text></svg>')
    low, high = min(values), max(values)
    low, high = (low - 0.05, high + 0.05) if high - low < 0.1 else (low, high)
    pad, step = 24, (width - 48) / max(1, len(points) - 1)

    def y(value: float) -> float:
        return height - pad - (value - low) / (high - low) * (height - 2 * pad)

    marks, line = [], []
    last = values[0]
    for i, dep in enumerate(points):
        x = pad + i * step
        value = last = dep.metric if dep.metric is not None else last  # no metric: drawn at the level before
        key = "rollback" if dep.operation == "rollback" else dep.outcome
        shape, colour, label = MARKS.get(key, ("circle", "#9e9e9e", dep.outcome.lower()))
        tip = f"<title>{escape(dep.created_at)} {escape(label)} {escape(metric)} {value:.4f}</title>"
        cx, cy = x, y(value)
        if dep.outcome in ("Deployed", "Created"):
            line.append(f"{cx:.1f},{cy:.1f}")
        if shape == "circle":
            marks.append(f'<circle class="mark {key}" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}">{tip}</circle>')
        elif shape == "cross":
            marks.append(f'<path class="mark {key}" d="M{cx - 4:.1f},{cy - 4:.1f} L{cx + 4:.1f},{cy + 4:.1f} '
                         f'M{cx - 4:.1f},{cy + 4:.1f} L{cx + 4:.1f},{cy - 4:.1f}" stroke="{colour}" '
                         f'stroke-width="2.5">{tip}</path>')
        elif shape == "triangle":
            marks.append(f'<polygon class="mark {key}" points="{cx:.1f},{cy - 5:.1f} {cx - 5:.1f},{cy + 4:.1f} '
                         f'{cx + 5:.1f},{cy + 4:.1f}" fill="{colour}">{tip}</polygon>')
        else:
            marks.append(f'<polygon class="mark {key}" points="{cx:.1f},{cy - 5:.1f} {cx + 5:.1f},{cy:.1f} '
                         f'{cx:.1f},{cy + 5:.1f} {cx - 5:.1f},{cy:.1f}" fill="{colour}">{tip}</polygon>')
    axis = (f'<text x="2" y="{pad - 8}" font-size="10" fill="#555">{high:.3f}</text>'
            f'<text x="2" y="{height - 4}" font-size="10" fill="#555">{low:.3f}</text>')
    path = f'<polyline points="{" ".join(line)}" fill="none" stroke="#90a4ae" stroke-width="1.5"/>' if line else ""
    return (f'<svg class="chart" width="{width}" height="{height}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg">{title}{axis}{path}{"".join(marks)}</svg>')


def _deployments(endpoint: EndpointStatus) -> str:
    """An Azure ML endpoint's deployments: traffic and the model each serves."""
    if not endpoint.deployments:
        return ""
    rows = "".join(f"<li>{escape(str(d.get('name')))}: {escape(str(d.get('traffic', 0)))} % - "
                   f"{escape(str(d.get('modelPath') or d.get('model') or '?'))} "
                   f"({escape(str(d.get('provisioningState') or '?'))})</li>" for d in endpoint.deployments)
    return f'<ul class="deployments">{rows}</ul>'


def render(snapshot: StatusSnapshot) -> str:
    legend = "".join(f'<span style="color:{c}">&#9632; {escape(label)}</span> ' for _, c, label in MARKS.values())
    endpoint_rows = "".join(
        f"<tr><td>{escape(e.target)}/{escape(e.name)}</td><td class=\"model\">{escape(e.serving or '-')}"
        f"{_deployments(e)}</td>"
        f"{_cell(e.since)}{_cell(e.run_id[:12] if e.run_id else None)}"
        f"<td>{chart(e.history, snapshot.metric)}</td></tr>" for e in snapshot.endpoints)
    run_rows = "".join(
        f'<tr>{_cell(r.id[:12])}<td class="status {escape(r.status)}">{escape(r.status)}</td>'
        f"{_cell(r.data_path or r.model_path)}{_cell(r.trigger + (' by ' + r.caller if r.caller else ''))}"
        f"{_metrics(r.metrics, snapshot.gated)}{_cell(r.updated_at)}{_cell(r.error)}</tr>" for r in snapshot.runs)
    waiting_rows = "".join(
        f"<tr>{_cell(r.id)}{_metrics(r.metrics, snapshot.gated or (snapshot.metric,))}<td>"
        + "; ".join(f"{escape(str(x.get('endpoint')))} serves {escape(str(x.get('servingModel')))} "
                    f"({escape(snapshot.metric)} {escape(str(x.get('servingMetric')))})" for x in r.endpoint_results)
        + f"</td><td><code>POST /api/runs/{escape(r.id)}/approve</code> or <code>/reject</code></td></tr>"
        for r in snapshot.waiting) or '<tr><td colspan="4">none</td></tr>'
    rejected_rows = "".join(f"<tr>{_cell(f['name'])}{_cell(f.get('code'))}{_cell(f.get('at'))}</tr>"
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
</style></head><body>
<h1>Retraining status</h1>
<h2>Endpoints ({shown})</h2><p>{legend}</p>
<table id="endpoints"><tr><th>endpoint</th><th>serves</th><th>since</th><th>from run</th>
<th>{escape(snapshot.metric)} over its deployments</th></tr>{endpoint_rows}</table>
<h2>Awaiting approval</h2>
<table id="waiting"><tr><th>run</th><th>gated metrics</th><th>now serving</th><th>decide</th></tr>
{waiting_rows}</table>
<h2>Last runs</h2>
<table id="runs"><tr><th>run</th><th>state</th><th>file</th><th>trigger</th><th>gated metrics</th><th>updated</th>
<th>reason</th></tr>
{run_rows}</table>
<h2>Files in rejected/</h2>
<table id="rejected"><tr><th>file</th><th>code</th><th>rejected at</th></tr>{rejected_rows}</table>
</body></html>
"""
