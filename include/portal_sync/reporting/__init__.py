"""One reporting layer: the data-quality site, the status page, explain and the text summaries.

- ``portal_sync.store.reads``: every query behind a report
- ``model``: runs and data sets as the reports judge them (status worst first, totals)
- ``format``: times, ages, durations, numbers, status words and escaping, shared by HTML and text
- ``html``: the pages, rendered from ``templates/*.html.j2`` by the environments below
- ``text``: the plain-text outputs of the CLI and the task logs

Two Jinja2 environments, both autoescaping every ``{{ value }}`` (only values a template built
itself, or trusted assets marked ``Markup`` in Python, pass unescaped): ``"site"`` for the
offline data-quality site, which also cuts long text and defangs URLs in data so no file of
the site holds an external URL, and ``"page"`` for the Airflow status page.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined

from portal_sync.reporting import format as fmt

Kind = Literal["site", "page"]

FILTERS = {
    "local": fmt.local_time, "utc": fmt.utc_time, "iso_utc": fmt.iso_utc, "age": fmt.age, "elapsed": fmt.elapsed,
    "duration": fmt.duration, "num": fmt.num, "count": fmt.count, "tone": fmt.tone, "until": fmt.until,
}


@cache
def environment(kind: Kind) -> Environment:
    env = Environment(
        loader=PackageLoader("portal_sync.reporting", "templates"),
        autoescape=True,
        finalize=fmt.site_finalize if kind == "site" else fmt.page_finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def render(kind: Kind, template: str, **context: object) -> str:
    return environment(kind).get_template(template).render(**context)
