"""Server-side SVG charts: no chart library in the browser."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

ROW_H = 26
LABEL_W = 190
BAR_W = 360


def bar_chart(rows: Sequence[tuple[str, int]], *, title: str) -> Markup:
    """Horizontal bars, one per (label, count), scaled to the largest count."""
    if not rows:
        return Markup('<p class="muted">No data yet.</p>')
    peak = max(n for _, n in rows) or 1
    height = ROW_H * len(rows) + 8
    width = LABEL_W + BAR_W + 80
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, n) in enumerate(rows):
        y = 4 + i * ROW_H
        bar = max(2, round(BAR_W * n / peak)) if n else 0
        text = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + 17}" text-anchor="end">{escape(text)}</text>'
            f'<rect x="{LABEL_W}" y="{y + 3}" width="{bar}" height="{ROW_H - 8}" rx="3"/>'
            f'<text x="{LABEL_W + bar + 6}" y="{y + 17}">{n}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
