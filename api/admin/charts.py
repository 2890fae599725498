"""Server-side charts as inline SVG: no JavaScript, no CDN, readable in any browser and in tests.

Charts take `api.admin.views.series.TimeSeries` (dense, bucketed points; None = no data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from api.admin.views.series import TimeSeries

PALETTE = ["#2e5bff", "#f79009", "#12b76a", "#c01048", "#7a5af8"]
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 40, 24


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return candidate
    return 10 ** (exponent + 1)


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def line_chart(series: Sequence[TimeSeries], *, title: str, unit: str = "", width: int = 640,
               height: int = 210, chart_id: str | None = None, time_format: str = "%H:%M") -> Markup:
    """One or more series over the same buckets; gaps (None) break the line."""
    n = max((len(s.points) for s in series), default=0)
    values = [p.value for s in series for p in s.points if p.value is not None]
    y_max = _nice_ceiling(max(values) if values else 0)
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM

    def x(i: int) -> float:
        return PAD_LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return PAD_TOP + plot_h - plot_h * v / y_max

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" data-points="{len(values)}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + f'><title>{escape(title)}</title>',
        f'<text x="{PAD_LEFT}" y="14" style="font-weight:600;fill:#1d2433">{escape(title)}'
        + (f" ({escape(unit)})" if unit else "") + "</text>",
    ]
    for k in range(5):
        gv = y_max * k / 4
        gy = y(gv)
        parts.append(f'<line x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" '
                     'stroke="#eaecf0"/>')
        parts.append(f'<text x="{PAD_LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">{_fmt(gv)}</text>')
    if n:
        ref = next(s for s in series if s.points)
        for i in sorted({0, n // 2, n - 1}):
            anchor = "start" if i == 0 else ("end" if i == n - 1 else "middle")
            label = ref.points[i].at.strftime(time_format)
            parts.append(f'<text x="{x(i):.1f}" y="{height - 6}" text-anchor="{anchor}">{label}</text>')
    legend_x = width - PAD_RIGHT
    for idx, s in enumerate(series):
        color = PALETTE[idx % len(PALETTE)]
        segments, current = [], []
        for i, p in enumerate(s.points):
            if p.value is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(f"{x(i):.1f},{y(p.value):.1f}")
        if current:
            segments.append(current)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
            else:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                             f'stroke-linejoin="round" points="{" ".join(seg)}"/>')
        label = escape(s.name)
        legend_x -= 8 + 7 * len(s.name)
        parts.append(f'<rect x="{legend_x}" y="23" width="10" height="3" fill="{color}"/>'
                     f'<text x="{legend_x + 13}" y="29">{label}</text>')
    if not values:
        parts.append(f'<text x="{PAD_LEFT + plot_w / 2}" y="{PAD_TOP + plot_h / 2}" '
                     'text-anchor="middle">no data in this window</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def presence_strip(series: TimeSeries, *, title: str, width: int = 640, height: int = 46,
                   chart_id: str | None = None) -> Markup:
    """A heartbeat timeline: one cell per bucket, green when the node reported in it."""
    n = len(series.points)
    plot_w = width - PAD_LEFT - PAD_RIGHT
    cell = plot_w / n if n else plot_w
    reported = sum(1 for p in series.points if p.value)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'data-buckets="{n}" data-reported="{reported}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + f'><title>{escape(title)}</title>',
        f'<text x="{PAD_LEFT}" y="12" style="font-weight:600;fill:#1d2433">{escape(title)}</text>',
    ]
    for i, p in enumerate(series.points):
        color = "#12b76a" if p.value else "#fda29b"
        parts.append(f'<rect x="{PAD_LEFT + i * cell:.1f}" y="18" width="{max(cell - 1, 0.5):.1f}" '
                     f'height="14" fill="{color}"><title>{p.at.strftime("%H:%M")}: '
                     f'{int(p.value or 0)} heartbeat(s)</title></rect>')
    if n:
        parts.append(f'<text x="{PAD_LEFT}" y="{height - 2}">{series.points[0].at.strftime("%H:%M")}</text>')
        parts.append(f'<text x="{width - PAD_RIGHT}" y="{height - 2}" text-anchor="end">'
                     f'{series.points[-1].at.strftime("%H:%M")}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
