"""Trend charts as inline SVG, drawn here in Python: no script, no library, nothing loaded.

The pages forbid scripts other than their own and every load (Content-Security-Policy), so
a chart is markup only: lines, dots with a native tooltip (``<title>``), axes with dates, a
legend and an accessible name and description. Only presentation attributes are used, never
``style``: a ``style`` attribute is inline style the site's hash-based CSP would block. Text
and axes are ``currentColor`` so the chart follows the page's colours (light or dark).

Pure functions of their arguments; every text is escaped (``site_esc``: also no literal
external URL), so a check or data-set name cannot inject markup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup

from portal_sync.reporting.format import site_esc

# Colours that stay apart on white and on a dark background; dash patterns tell severities apart.
PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#953800",
           "#57606a", "#4d2d00")
DASHES = {"refuse": "", "warn": "6 4", "fail": "2 3", "": ""}
WIDTH, HEIGHT = 720, 240
_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 64, 16, 16, 36
_LEGEND_LINE = 18  # pixels per legend row


@dataclass(frozen=True)
class Series:
    """One line: a label for the legend, a style key (a severity, or "" for none) and one value per day."""

    label: str
    values: Sequence[float]
    style: str = ""
    note: str = ""  # extra legend text, e.g. "failed in 12 runs"
    keep: bool = False  # drawn and in the legend even when every value is 0 (a table check that failed)


@dataclass(frozen=True)
class Chart:
    """What one chart shows: the days of its x axis (oldest first) and its series."""

    chart_id: str
    title: str
    y_label: str
    days: Sequence[date]
    series: Sequence[Series]
    empty_text: str = "Nothing to show in this period."
    unit: str = "rows"


def nice_step(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1: rows are whole)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(int(m * power) for m in (1, 2, 5, 10) if value <= m * power)


def y_scale(largest: float, most_ticks: int = 4) -> list[int]:
    """Whole, evenly spaced y ticks from 0 up to the first one at or above ``largest`` (at most
    ``most_ticks`` steps); the last is the top of the axis."""
    step = nice_step(largest / most_ticks)
    steps = max(1, math.ceil(largest / step))
    return [step * i for i in range(steps + 1)]


def x_label_days(days: Sequence[date], every: int = 7) -> list[int]:
    """Indexes of the days labelled on the x axis: the last day, then every ``every`` days back, and the first
    only when it is not crowded by its neighbour."""
    if not days:
        return []
    last = len(days) - 1
    picked = list(range(last, -1, -every))
    if picked[-1] != 0 and picked[-1] >= every // 2:
        picked.append(0)
    return sorted(picked)


def _id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)[:80] or "chart"


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _fmt(value: float) -> str:
    """A coordinate with at most one decimal (short markup, exact enough for a pixel)."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def line_chart(chart: Chart, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """One chart as ``<figure><svg>...</svg></figure>``; an empty chart (no series, or every value 0) says so."""
    ident = _id(chart.chart_id)
    days = list(chart.days)
    series = [s for s in chart.series if s.keep or any(v for v in s.values)]
    first = days[0].isoformat() if days else ""
    last = days[-1].isoformat() if days else ""
    span = f"{first} to {last}" if days else "no days"
    legend_rows = len(series)
    total_height = height + (legend_rows * _LEGEND_LINE + 8 if legend_rows else 0)
    plot_w = width - _PAD_LEFT - _PAD_RIGHT
    plot_h = height - _PAD_TOP - _PAD_BOTTOM
    x0, y0 = _PAD_LEFT, _PAD_TOP + plot_h  # the origin, bottom left

    if series:
        desc = "; ".join(
            f"{s.label}: {_num(sum(s.values))} {chart.unit} in total, at most {_num(max(s.values, default=0))} on"
            " one day"
            + (f", {s.note}" if s.note else "") for s in series)
    else:
        desc = chart.empty_text
    parts = [
        f'<figure class="trend" id="{ident}"><figcaption>{site_esc(chart.title)}, {span}</figcaption>',
        f'<svg class="trend-chart" role="img" aria-labelledby="{ident}-title {ident}-desc" width="{width}"'
        f' height="{total_height}" viewBox="0 0 {width} {total_height}" font-family="system-ui, sans-serif"'
        ' font-size="11" fill="currentColor">',
        f'<title id="{ident}-title">{site_esc(chart.title)}, {span}</title>',
        f'<desc id="{ident}-desc">{site_esc(desc)}</desc>',
    ]
    ticks = y_scale(max((max(s.values, default=0) for s in series), default=0))
    top = ticks[-1]

    def x_at(i: int) -> float:
        return x0 + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y_at(value: float) -> float:
        return y0 - plot_h * value / top

    # grid and y axis
    for tick in ticks:
        y = _fmt(y_at(tick))
        parts.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + plot_w}" y2="{y}" stroke="currentColor"'
                     f' stroke-opacity="{0.5 if tick == 0 else 0.15}"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">{_num(tick)}</text>')
    parts.append(f'<line x1="{x0}" y1="{_PAD_TOP}" x2="{x0}" y2="{y0}" stroke="currentColor" stroke-opacity="0.5"/>')
    parts.append(f'<text x="12" y="{_fmt(_PAD_TOP + plot_h / 2)}" text-anchor="middle"'
                 f' transform="rotate(-90 12 {_fmt(_PAD_TOP + plot_h / 2)})">{site_esc(chart.y_label)}</text>')
    # x axis: dates
    for i in x_label_days(days):
        x = _fmt(x_at(i))
        parts.append(f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y0 + 4}" stroke="currentColor" stroke-opacity="0.5"/>')
        parts.append(f'<text x="{x}" y="{y0 + 16}" text-anchor="middle">{days[i]:%m-%d}</text>')

    if not series:
        parts.append(f'<text class="empty" x="{_fmt(x0 + plot_w / 2)}" y="{_fmt(_PAD_TOP + plot_h / 2)}"'
                     f' text-anchor="middle" font-size="13">{site_esc(chart.empty_text)}</text>')
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        dash = DASHES.get(s.style, "")
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        label = site_esc(s.label)
        points = " ".join(f"{_fmt(x_at(i))},{_fmt(y_at(v))}" for i, v in enumerate(s.values))
        parts.append(f'<g class="series" data-series="{label}">')
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for i, v in enumerate(s.values):
            if v:
                parts.append(f'<circle cx="{_fmt(x_at(i))}" cy="{_fmt(y_at(v))}" r="3" fill="{colour}">'
                             f'<title>{label}: {_num(v)} {site_esc(chart.unit)} on {days[i].isoformat()}</title>'
                             "</circle>")
        parts.append("</g>")
    # legend, under the plot
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        dash = DASHES.get(s.style, "")
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        y = height + n * _LEGEND_LINE + 4
        note = f" ({site_esc(s.note)})" if s.note else ""
        parts.append(f'<g class="legend-item"><line x1="{x0}" y1="{y}" x2="{x0 + 24}" y2="{y}" stroke="{colour}"'
                     f' stroke-width="2"{dash_attr}/><text x="{x0 + 30}" y="{y}" dominant-baseline="middle">'
                     f"{site_esc(s.label)}{note}</text></g>")
    parts.append("</svg></figure>")
    return Markup("".join(parts))
