"""The inline SVG trend charts without a database: scales, points, axes, legend, empty state, escaping."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest

from portal_sync.reporting import charts
from portal_sync.reporting.charts import Chart, Series, line_chart
from portal_sync.reporting.html import trend_charts
from portal_sync.reporting.model import Trends, TrendSeries

DAYS = [date(2026, 11, 8) + timedelta(days=i) for i in range(30)]


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(markup: str) -> Elements:
    parser = Elements()
    parser.feed(markup)
    return parser


def polyline_points(markup: str) -> list[list[tuple[float, float]]]:
    return [[tuple(float(n) for n in p.split(",")) for p in attrs["points"].split()]
            for tag, attrs in parse(markup).elements if tag == "polyline"]


@pytest.mark.parametrize(("largest", "ticks"), [
    (0, [0, 1]), (1, [0, 1]), (3, [0, 1, 2, 3]), (5, [0, 2, 4, 6]), (25, [0, 10, 20, 30]),
    (2080, [0, 1000, 2000, 3000]), (100, [0, 50, 100]),
])
def test_y_scale_is_whole_and_readable(largest: int, ticks: list[int]) -> None:
    assert charts.y_scale(largest) == ticks


def test_x_axis_labels_every_week_ending_today() -> None:
    assert charts.x_label_days(DAYS) == [1, 8, 15, 22, 29]
    assert charts.x_label_days(DAYS[:10]) == [2, 9]  # the first day would crowd the third
    assert charts.x_label_days(DAYS[:12]) == [0, 4, 11]
    assert charts.x_label_days([]) == []


def test_points_follow_the_values_on_the_scale() -> None:
    values = [0] * 28 + [5, 10]
    svg = line_chart(Chart("c", "Failing rows", "rows", DAYS, [Series("charges.orphan_account", values, "refuse")]))
    [points] = polyline_points(svg)
    assert len(points) == 30
    xs = [x for x, _ in points]
    assert xs[0] == charts._PAD_LEFT and xs[-1] == charts.WIDTH - charts._PAD_RIGHT  # first and last day at the edges
    assert all(b > a for a, b in zip(xs, xs[1:], strict=False))  # days left to right, evenly
    bottom = charts.HEIGHT - charts._PAD_BOTTOM
    top = charts._PAD_TOP
    assert points[0][1] == bottom and points[-1][1] == top  # 0 on the axis, the largest value (10) at the top
    assert points[-2][1] == pytest.approx((bottom + top) / 2, abs=0.1)  # 5 half way
    # a dot with a tooltip for each day that has rows, none for the others
    tooltips = re.findall(r"<circle [^>]*><title>([^<]*)</title></circle>", svg)
    assert tooltips == ["charges.orphan_account: 5 rows on 2026-12-06", "charges.orphan_account: 10 rows on 2026-12-07"]


def test_axes_dates_legend_and_accessible_name() -> None:
    svg = line_chart(Chart("trend-x", "SPRINGFLD: failing rows", "failing rows", DAYS, [
        Series("charges.orphan_account refused", [1] * 30, "refuse", note="failed in 30 runs"),
        Series("balances.buckets_sum warned", [2] * 30, "warn"),
    ]))
    doc = parse(svg)
    [(_, svg_attrs)] = [(t, a) for t, a in doc.elements if t == "svg"]
    assert svg_attrs["role"] == "img" and svg_attrs["aria-labelledby"] == "trend-x-title trend-x-desc"
    assert '<title id="trend-x-title">SPRINGFLD: failing rows, 2026-11-08 to 2026-12-07</title>' in svg
    assert "charges.orphan_account refused: 30 rows in total, at most 1 on one day, failed in 30 runs" in svg
    text = "".join(doc.text)
    for label in ("11-09", "11-16", "11-23", "11-30", "12-07"):  # dates on the x axis
        assert label in text
    assert "charges.orphan_account refused (failed in 30 runs)" in text and "balances.buckets_sum warned" in text
    legend = [a for t, a in doc.elements if t == "line" and a.get("x2") == str(charts._PAD_LEFT + 24)]
    assert [a.get("stroke-dasharray") for a in legend] == [None, "6 4"]  # refusals solid, warnings dashed
    assert legend[0]["stroke"] != legend[1]["stroke"]
    assert "style" not in {k for _, a in doc.elements for k in a}  # the site's CSP would block style attributes
    assert "http" not in svg  # no namespace URL or any other: the site holds no external URL


def test_empty_state_says_so() -> None:
    for series in ([], [Series("charges", [0] * 30)]):
        svg = line_chart(Chart("e", "Rows published", "rows", DAYS, series, empty_text="Nothing published."))
        assert 'class="empty"' in svg and "Nothing published." in svg
        assert polyline_points(svg) == [] and "<circle" not in svg
        assert "<desc id=\"e-desc\">Nothing published.</desc>" in svg
    kept = line_chart(Chart("k", "Failing rows", "rows", DAYS, [Series("charges.row_count_change", [0] * 30,
                                                                       "fail", keep=True)]))
    assert 'class="empty"' not in kept and len(polyline_points(kept)) == 1  # a failed table check stays visible


def test_names_are_escaped() -> None:
    evil = "<script>alert(1)</script>\"' https://evil.example"
    svg = line_chart(Chart(evil, evil, evil, DAYS, [Series(evil, [1] * 30, note=evil)], empty_text=evil))
    doc = parse(svg)
    assert {t for t, _ in doc.elements} <= {"figure", "figcaption", "svg", "title", "desc", "line", "text", "g",
                                            "polyline", "circle"}
    assert "<script" not in svg and "https://" not in svg and "&lt;script&gt;" in svg
    assert re.fullmatch(r"[A-Za-z0-9_-]+", dict(doc.elements[0][1])["id"])  # ids from names are made safe
    for _, attrs in doc.elements:
        assert not any(k.startswith("on") for k in attrs)


def test_trend_charts_of_a_community() -> None:
    trends = Trends("SPRINGFLD", "America/Denver", DAYS,
                    [TrendSeries("charges.orphan_account", [0] * 29 + [25], "refuse", 3)],
                    [TrendSeries("charges", [100] * 30, runs=288)])
    failing, published = trend_charts(trends)
    assert "charges.orphan_account refused (failed in 3 runs)" in failing
    assert "SPRINGFLD: failing rows per check" in failing and "America/Denver" in failing
    assert "charges (288 publishes)" in published
    assert Trends.from_dict(trends.as_dict()) == trends  # the status API's JSON form round-trips
    empty = trend_charts(Trends("MESAVRD", "UTC", DAYS, [], []))
    assert "No check failed in the last 30 days." in empty[0] and "Nothing published in the last 30 days." in empty[1]
