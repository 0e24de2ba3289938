"""The status page's pieces that draw (no I/O here): the chart of an endpoint's deployments as inline SVG - the
gate metric over time on a time axis, the gate's line, each kind of attempt marked, forced ones ringed with who
forced them - and times shown relative to when the page was made (with the exact time on hover)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from shared.records import Deployment

MARKS = {  # outcome -> (shape, colour, label)
    "Deployed": ("circle", "#2e7d32", "deployed"),
    "Created": ("circle", "#607d8b", "created"),
    "RolledBack": ("cross", "#c62828", "rolled back (did not serve)"),
    "Rejected": ("triangle", "#ef6c00", "rejected by the gate"),
    "rollback": ("diamond", "#1565c0", "operator rollback"),
}
FORCED = "#6a1b9a"  # the ring around a deployment forced past the gate
UNITS = ((60, 1, "s"), (3600, 60, "min"), (2 * 86400, 3600, "h"), (730 * 86400, 86400, "d"))


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def relative(text: str | None, now: datetime) -> str:
    """`text` (ISO 8601) as '5 min ago' (or 'in 5 min') - seconds, minutes, hours up to two days, days up to two
    years, then years -, never broken over two lines (the page's CSS), the exact time on hover; '-' for none."""
    when = parse_time(text)
    if when is None:
        return escape(text) if text else "&ndash;"
    seconds = (now - when).total_seconds()
    size = abs(seconds)
    if size < 1:
        words = "just now"
    else:
        count, unit = next(((int(size // step), unit) for limit, step, unit in UNITS if size < limit),
                           (int(size // (365 * 86400)), "y"))
        words = f"{count} {unit} ago" if seconds > 0 else f"in {count} {unit}"
    exact = escape(when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    return f'<time datetime="{escape(text or "")}" title="{exact}">{words}</time>'


def _mark(shape: str, key: str, x: float, y: float, colour: str, tip: str) -> str:
    if shape == "circle":
        return f'<circle class="mark {key}" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">{tip}</circle>'
    if shape == "cross":
        return (f'<path class="mark {key}" d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},'
                f'{y + 4:.1f}L{x + 4:.1f},{y - 4:.1f}" stroke="{colour}" stroke-width="2.5">{tip}</path>')
    if shape == "triangle":
        return (f'<polygon class="mark {key}" points="{x:.1f},{y - 5:.1f} {x - 5:.1f},{y + 4:.1f} {x + 5:.1f},'
                f'{y + 4:.1f}" fill="{colour}">{tip}</polygon>')
    return (f'<polygon class="mark {key}" points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} '
            f'{x - 5:.1f},{y:.1f}" fill="{colour}">{tip}</polygon>')


def _tick(when: datetime, span: float) -> str:
    return when.strftime("%Y-%m-%d" if span > 2 * 86400 else "%m-%d %H:%M")


def chart(history: list[Deployment], metric: str, gate: float | None = None, width: int = 340,
          height: int = 130) -> str:
    """The gate metric over an endpoint's deployments (`history`: newest first) as inline SVG: x is the time of
    each attempt (a time axis with its first, middle and last times), y the metric, a dashed line at the gate."""
    points = [d for d in reversed(history) if d.metric is not None or d.operation == "rollback"
              or d.outcome in ("RolledBack", "Rejected")]
    values = [d.metric for d in points if d.metric is not None]
    title = f"<title>{escape(metric)} over the deployments of this endpoint</title>"
    if not values:
        return (f'<svg class="chart" width="{width}" height="{height}" role="img">{title}<text x="10" y="{height // 2}"'
                f' font-size="12" fill="#777">no {escape(metric)} recorded yet</text></svg>')
    low, high = min(values + ([gate] if gate is not None else [])), max(values + ([gate] if gate is not None else []))
    low, high = (low - 0.05, high + 0.05) if high - low < 0.1 else (low, high)
    left, right, top, bottom = 40, 10, 12, 26  # the plot's margins: the metric's scale left, the time axis below
    times = [parse_time(d.created_at) or datetime.now(UTC) for d in points]
    first, last = min(times), max(times)
    span = (last - first).total_seconds()

    def x(when: datetime) -> float:
        share = (when - first).total_seconds() / span if span > 0 else 0.5
        return left + share * (width - left - right)

    def y(value: float) -> float:
        return height - bottom - (value - low) / (high - low) * (height - top - bottom)

    marks, line = [], []
    last_value = values[0]
    for dep, when in zip(points, times, strict=True):
        value = last_value = dep.metric if dep.metric is not None else last_value  # none: the level before
        key = "rollback" if dep.operation == "rollback" else dep.outcome
        shape, colour, label = MARKS.get(key, ("circle", "#9e9e9e", dep.outcome.lower()))
        forced = f", forced by {dep.caller or '?'}" if dep.forced else ""
        tip = f"<title>{escape(dep.created_at)} {escape(label)}{escape(forced)} {escape(metric)} {value:.4f}</title>"
        cx, cy = x(when), y(value)
        if dep.outcome in ("Deployed", "Created"):
            line.append(f"{cx:.1f},{cy:.1f}")
        if dep.forced:
            marks.append(f'<circle class="forced" cx="{cx:.1f}" cy="{cy:.1f}" r="7" fill="none" stroke="{FORCED}" '
                         f'stroke-width="1.5">{tip}</circle>')
        marks.append(_mark(shape, key, cx, cy, colour, tip))
    base = height - bottom
    axis = (f'<text x="2" y="{top + 4}" font-size="10" fill="#555">{high:.3f}</text>'
            f'<text x="2" y="{base}" font-size="10" fill="#555">{low:.3f}</text>'
            f'<line class="time-axis" x1="{left}" y1="{base + 4}" x2="{width - right}" y2="{base + 4}" '
            f'stroke="#999"/>')
    ticks = [(first, "start"), (last, "end")] if span > 0 else [(first, "middle")]
    if span > 0:
        ticks.insert(1, (first + (last - first) / 2, "middle"))
    axis += "".join(f'<text class="tick" x="{x(when):.1f}" y="{height - 4}" font-size="10" fill="#555" '
                    f'text-anchor="{anchor}">{escape(_tick(when, span))}</text>' for when, anchor in ticks)
    if gate is not None:
        axis += (f'<line class="gate" x1="{left}" y1="{y(gate):.1f}" x2="{width - right}" y2="{y(gate):.1f}" '
                 f'stroke="#c62828" stroke-dasharray="4 3"><title>the gate: {escape(metric)} {gate:g}</title></line>'
                 f'<text x="{width - right}" y="{y(gate) - 3:.1f}" font-size="9" fill="#c62828" text-anchor="end">'
                 f"gate {gate:g}</text>")
    path = f'<polyline points="{" ".join(line)}" fill="none" stroke="#90a4ae" stroke-width="1.5"/>' if line else ""
    return (f'<svg class="chart" width="{width}" height="{height}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg">{title}{axis}{path}{"".join(marks)}</svg>')
