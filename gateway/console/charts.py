"""Server-rendered SVG charts: stacked bars, horizontal bars and a line. No JavaScript, no build step.

Every text in a chart is escaped (labels come from data: reasons, agents, channels). Each bar and
point carries a ``<title>`` with its figure, so a hover shows it and a screen reader reads it; the
pages print the same figures in a table beside each chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = ("#0b6e4f", "#2b6cb0", "#b7791f", "#9f7aea", "#c53030", "#319795", "#718096", "#d53f8c")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT}><title>{escape(title)}</title>')


def colour_of(name: str, names: Sequence[str]) -> str:
    return PALETTE[names.index(name) % len(PALETTE)] if name in names else PALETTE[-1]


def stacked_bars(labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, width: int = 720,
                 height: int = 220) -> Markup:
    """One bar per label, stacked by series (e.g. interactions per hour, by channel)."""
    names = list(series)
    totals = [sum(series[n][i] for n in names) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    left, bottom, right, head = 40, 30, 10, 10
    plot_w, plot_h = width - left - right, height - bottom - head
    step = plot_w / max(len(labels), 1)
    bar_w = max(step * 0.8, 1)
    parts = [_open(width, height, title)]
    for frac in (0, 0.5, 1):
        y = head + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9e2ec"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{top * frac:g}</text>')
    every = max(1, round(len(labels) / 12))
    for i, label in enumerate(labels):
        x = left + i * step + (step - bar_w) / 2
        y = head + plot_h
        for n in names:
            v = series[n][i]
            if not v:
                continue
            h = plot_h * v / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{colour_of(n, names)}"><title>{escape(label)} {escape(n)}: {v:g}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle">'
                         f'{escape(label)}</text>')
    lx = left
    for n in names:
        parts.append(f'<rect x="{lx}" y="{height - 10}" width="8" height="8" fill="{colour_of(n, names)}"/>'
                     f'<text x="{lx + 11}" y="{height - 2}">{escape(n)}</text>')
        lx += 14 + 7 * len(n)
    parts.append("</svg>")
    return Markup("".join(parts))


def hbars(items: Sequence[tuple[str, float]], *, title: str, width: int = 420, unit: str = "") -> Markup:
    """Horizontal bars, one per (label, value): e.g. top contact reasons."""
    row, left = 20, 150
    height = row * max(len(items), 1) + 10
    top = _nice_max(max((v for _, v in items), default=0))
    parts = [_open(width, height, title)]
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        w = (width - left - 50) * value / top
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="{PALETTE[0]}">'
                     f'<title>{escape(label)}: {value:g}{escape(unit)}</title></rect>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 13}">{value:g}{escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def line(points: Sequence[tuple[str, float]], *, title: str, y_max: float = 100, width: int = 420,
         height: int = 180, unit: str = "%") -> Markup:
    """A line through (label, value) points on a fixed scale (e.g. QA score % over time)."""
    left, bottom, right, head = 34, 24, 10, 10
    plot_w, plot_h = width - left - right, height - bottom - head
    n = len(points)
    parts = [_open(width, height, title)]
    for frac in (0, 0.5, 1):
        y = head + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9e2ec"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{y_max * frac:g}</text>')
    coords = []
    for i, (label, value) in enumerate(points):
        x = left + (plot_w * (i + 0.5) / n if n else 0)
        y = head + plot_h * (1 - min(value, y_max) / y_max)
        coords.append((x, y, label, value))
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[1]}" stroke-width="2"/>')
    every = max(1, round(n / 8))
    for i, (x, y, label, value) in enumerate(coords):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[1]}">'
                     f'<title>{escape(label)}: {value:.1f}{escape(unit)}</title></circle>')
        if i % every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
