"""The FastAPI app behind the "Sync status" page (mounted by ``sync_status_plugin.py`` at /sync-status).

Authentication. Airflow mounts plugin apps with ``app.mount()``: the core API's router-level
security never reaches them, so this app authenticates every route itself with Airflow's own
dependency, ``airflow.api_fastapi.core_api.security.get_user``. It accepts what the rest of
the UI and API accept: the JWT in the ``_token`` cookie that the login form sets (the browser
sends it with every request, including this page's frame) or an ``Authorization: Bearer``
token from ``POST /auth/token``. Without a valid token a page request is redirected to the
Airflow login (which comes back here afterwards) and an ``api/`` request gets 401/403.

Authorization. A user sees a community only if the auth manager lets them read its DAG's
runs (``is_authorized_dag(GET, RUN, dag_id)``): the page shows sync state and account facts,
so it follows the DAG permissions the Airflow UI already enforces. With the simple auth
manager every role from viewer up reads every DAG.

Data. ``portal_sync.status`` and ``portal_sync.explain`` read the portal database through the
Airflow connection ``portal_db``; the data-quality report site of each community is served
read-only from ``portal_sync.dq_report.report_dir`` so its links work in the browser.
"""

from __future__ import annotations

import html
import logging
import mimetypes
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from airflow.api_fastapi.app import API_ROOT_PATH, get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from portal_sync.config import Community, LoadedConfig, load_config
from portal_sync.dq_report import report_dir
from portal_sync.explain import Explanation, explain
from portal_sync.status import overview

log = logging.getLogger(__name__)

# get_user's answers when there is no usable login (missing, expired or forged token).
_LOGIN_FAILURES = {(401, "Not authenticated"), (401, "Token Expired"), (403, "Invalid JWT token")}
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'self'; "
        "base-uri 'none'")


async def _authenticated(user: GetUserDep) -> BaseUser:
    """App-wide guard: no route of this app answers without an Airflow login."""
    return user


def create_app() -> FastAPI:
    """Build the app (called once, by the plugin's LazyApp, inside the API server)."""
    app = FastAPI(title="Caselle sync status", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(_authenticated)])

    @app.exception_handler(StarletteHTTPException)
    async def _login_or_error(request: Request, exc: StarletteHTTPException) -> Response:
        if (exc.status_code, exc.detail) in _LOGIN_FAILURES and _is_page(request):
            return RedirectResponse(_login_url(request), status_code=303)
        return await http_exception_handler(request, exc)

    @app.get("/", response_class=HTMLResponse)
    def status_page(user: GetUserDep) -> HTMLResponse:
        config = _readable_config(user)
        try:
            data = overview(_portal_url(), config)
            body = render_overview(data, config)
        except Exception as exc:  # the page must say what is wrong, not fail with a bare 500
            log.exception("sync status: cannot read the portal database")
            body = _form(config) + _error(f"Cannot read the portal database: {exc}")
        return _html("Caselle sync status", body)

    @app.get("/explain", response_class=HTMLResponse)
    def explain_page(user: GetUserDep, community: str = Query(""), account: str = Query("")) -> HTMLResponse:
        config = _readable_config(user)
        if not community or not account:
            return _html("Why isn't this customer in the portal?", _form(config, community, account))
        try:
            answer = explain(_portal_url(), community, account, config)
            body = _form(config, community, account) + render_explanation(answer)
        except Exception as exc:
            log.exception("sync status: explain failed")
            body = _form(config, community, account) + _error(f"Cannot read the portal database: {exc}")
        return _html("Why isn't this customer in the portal?", body)

    @app.get("/api/status")
    def status_json(user: GetUserDep, community: str | None = None) -> dict[str, Any]:
        config = _readable_config(user)
        if community and community.upper() not in {c.code for c in config.communities}:
            raise HTTPException(404, f"no community {community!r} you may read")
        return overview(_portal_url(), config, community=community)

    @app.get("/api/explain")
    def explain_json(user: GetUserDep, community: str, account: str) -> dict[str, Any]:
        return explain(_portal_url(), community, account, _readable_config(user)).as_dict()

    @app.get("/reports/{code}/{path:path}")
    def report_file(user: GetUserDep, code: str, path: str) -> Response:
        config = _readable_config(user)
        if code.upper() not in {c.code for c in config.communities}:
            raise HTTPException(404, "no such report")
        root = report_dir(code.upper()).resolve()
        target = (root / (path or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise HTTPException(404, "no such report page (the report task writes it after each run)")
        media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return FileResponse(target, media_type=media, headers={"X-Content-Type-Options": "nosniff",
                                                               "Cache-Control": "no-store"})

    return app


# --------------------------------------------------------------------------- access


def _can_read(user: BaseUser, community: Community) -> bool:
    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=community.dag_id), user=user,
    )


def _readable_config(user: BaseUser) -> LoadedConfig:
    """The configuration narrowed to the communities whose DAG runs the user may read (read per request:
    a new community shows without restarting the API server)."""
    config = load_config()
    return LoadedConfig(tuple(c for c in config.communities if _can_read(user, c)), config.errors)


def _portal_url() -> str:
    from portal_sync.connections import portal_url

    return portal_url("portal_db")


def _is_page(request: Request) -> bool:
    relative = request.url.path.removeprefix(request.scope.get("root_path", "") or "")
    return request.method == "GET" and not relative.lstrip("/").startswith("api/")


def _login_url(request: Request) -> str:
    """Airflow's login, coming back to the page asked for (a same-site path, as /auth/login requires)."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{API_ROOT_PATH.rstrip('/')}/auth/login?{urlencode({'next': back})}"


# --------------------------------------------------------------------------- HTML

_STYLE = """
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --mute: #6e7781;
  --line: #d0d7de; --head: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --line: #30363d; --head: #161b22; --mute: #8b949e; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 20px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 6px; }
h2 small, .meta { color: var(--mute); font-weight: normal; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; font-weight: 600;
  color: #fff; background: var(--mute); white-space: nowrap; }
.ok { background: var(--ok); } .bad { background: var(--bad); } .warn { background: var(--warn); }
ul.checks { margin: 2px 0 0; padding-left: 16px; font-size: 12px; }
.note { color: var(--mute); font-size: 12px; }
form.explain { margin: 10px 0 4px; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; }
form.explain input, form.explain select, form.explain button { font: inherit; padding: 2px 6px; }
.answer { border-left: 4px solid var(--mute); padding: 6px 12px; margin: 10px 0; }
.answer.ok { border-color: var(--ok); background: none; } .answer.bad { border-color: var(--bad); background: none; }
.answer.warn { border-color: var(--warn); background: none; }
.error { border-left: 4px solid var(--bad); padding: 6px 12px; margin: 10px 0; }
"""

_BADGE = {
    "fresh": "ok", "STALE": "bad", "published": "ok", "failed": "bad", "passed": "ok", "warnings": "warn",
    "nothing_published": "warn", "running": "", "found_visible": "ok", "not_synced_yet": "warn",
    "not_eligible": "warn", "refused": "bad", "deleted": "bad", "renumbered": "warn",
}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def badge(text: str) -> str:
    return f'<span class="badge {_BADGE.get(text, "")}">{esc(text)}</span>'


def _html(title: str, body: str) -> HTMLResponse:
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f"<body>{body}</body></html>")
    return HTMLResponse(page, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                                       "X-Content-Type-Options": "nosniff"})


def _error(message: str) -> str:
    return f'<div class="error" role="alert">{esc(message)}</div>'


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def when(value: datetime | None, zone: str | None, now: datetime | None = None) -> str:
    """A time in the community's zone, with its age: operators think in local time and "how long ago"."""
    if value is None:
        return '<span class="note">never</span>'
    now = now or datetime.now(UTC)
    local = value.astimezone(_zone(zone))
    return (f'<time datetime="{esc(value.astimezone(UTC).isoformat())}">{local:%Y-%m-%d %H:%M %Z}</time>'
            f' <span class="note">({esc(age(now - value))})</span>')


def age(delta: Any) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "in the future"
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def duration(seconds: float | None) -> str:
    if not seconds:
        return "-"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _form(config: LoadedConfig, community: str = "", account: str = "") -> str:
    options = "".join(
        f'<option value="{esc(c.code)}"{" selected" if c.code == community.upper() else ""}>{esc(c.code)}</option>'
        for c in config.communities
    )
    return (
        '<form class="explain" action="explain" method="get">'
        "<strong>Why isn't this customer in the portal?</strong> "
        f'<label>Community <select name="community" required>{options}</select></label> '
        f'<label>Account number <input name="account" value="{esc(account)}" required '
        'placeholder="as the resident typed it" size="22"></label> '
        '<button type="submit">Explain</button></form>'
    )


def render_explanation(answer: Explanation) -> str:
    facts = []
    if answer.account:
        facts.append(("account", ", ".join(f"{k}={v}" for k, v in answer.account.items())))
    for key, value in answer.details.items():
        if isinstance(value, datetime):
            value = f"{value.astimezone(_zone(answer.details.get('time_zone'))):%Y-%m-%d %H:%M %Z}"
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            value = "; ".join(", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
        facts.append((key, value))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts if v not in (None, [], ""))
    return (
        f'<div class="answer {_BADGE.get(answer.verdict, "")}" data-verdict="{esc(answer.verdict)}">'
        f"<p>{badge(answer.verdict)} <strong>{esc(answer.community)} {esc(answer.typed)}</strong></p>"
        f"<p>{esc(answer.message)}</p>"
        + (f"<table>{rows}</table>" if rows else "")
        + '</div><p><a href="./">Back to the sync status</a></p>'
    )


def render_overview(data: dict[str, Any], config: LoadedConfig) -> str:
    """The status page body: one section per community, one row per enabled data set."""
    now = data["generated_at"]
    parts = [
        "<h1>Caselle sync status</h1>",
        f'<p class="meta">As of {now:%Y-%m-%d %H:%M:%S} UTC, from the portal database (Airflow connection '
        "portal_db). Freshness: a data set is STALE when it has not published for its alert limit "
        '(a multiple of its cadence). <a href="./">Refresh</a></p>',
        _form(config),
    ]
    if not data["communities"]:
        parts.append('<p class="note">No community to show: none is configured, or your Airflow role may not '
                     "read any community's DAG.</p>")
    parts.extend(_community(c, now) for c in data["communities"])
    if data["unconfigured"]:
        parts.append('<p class="note">Runs in the portal database of communities no longer configured: '
                     f'{esc(", ".join(data["unconfigured"]))}.</p>')
    for error in data["config_errors"]:
        parts.append(_error(f"Configuration error: {error}"))
    return "".join(parts)


def _community(com: dict[str, Any], now: datetime) -> str:
    zone = com["time_zone"]
    run = com["last_run"]
    code = com["code"]
    report = f"reports/{quote(code.lower())}/"
    if run:
        line = (f"Last run {badge(run['outcome'])} started {when(run['started_at'], zone, now)}"
                f' <span class="note">run {esc(run["airflow_run_id"] or run["run_key"])}</span>')
        if run.get("error"):
            line += f'<br><span class="note">{esc(run["error"])}</span>'
    else:
        line = '<span class="note">No run yet.</span>'
    if com["report_index"]:
        line += f' · <a href="{report}{esc(com["report_index"])}">Data-quality report</a>'
    rows = "".join(_dataset_row(ds, zone, now, report) for ds in com["datasets"])
    return (
        f'<section class="community" data-community="{esc(code)}">'
        f"<h2>{esc(com['name'])} <small>{esc(code)} · DAG {esc(com['dag_id'])} · schedule "
        f"<code>{esc(com['schedule'])}</code> ({esc(zone)})</small></h2><p>{line}</p>"
        "<table><thead><tr><th>Data set</th><th>Last publish</th><th>Freshness</th><th>Last run</th>"
        "<th>Rows changed</th><th>Refused</th><th>Data quality</th><th>High-water mark</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _dataset_row(ds: dict[str, Any], zone: str, now: datetime, report: str) -> str:
    last = ds["last_run"]
    quality = ds["quality"]
    fresh = (f"{badge(ds['freshness'])}<br><span class=\"note\">cadence {duration(ds['cadence_seconds'])},"
             f" alert after {duration(ds['alert_after_seconds'])}</span>")
    if last:
        run_cell = f"{badge(last['phase'])} {esc(last['mode'] or '')}<br>{when(last['started_at'], zone, now)}"
        if last.get("error"):
            run_cell += f'<br><span class="note">{esc(last["error"])}</span>'
        changed = (f'{last["rows_changed"]:,}<br><span class="note">+{last["rows_inserted"]:,} '
                   f'~{last["rows_updated"]:,} -{last["rows_deleted"]:,}</span>')
        refused = f"{last['rows_refused']:,}"
    else:
        run_cell, changed, refused = '<span class="note">none yet</span>', "-", "-"
    if ds["latest_phase"] == "skipped":  # the note (UTC, cadence) stays in the tooltip: the cell is narrow
        run_cell += (f'<br><span class="note" title="{esc(ds["latest_note"] or "")}">'
                     "skipped by the latest run: not due</span>")
    if ds["quarantined"]:
        refused += f'<br><span class="note">{ds["quarantined"]:,} in quarantine</span>'
    dq = badge(quality["status"])
    failed = quality["failed_checks"]
    if failed:
        dq += '<ul class="checks">' + "".join(
            f"<li>{esc(c['rule'])} ({esc(c['severity'])}): {int(c['failing_rows'] or 0):,} row(s)</li>"
            for c in failed) + "</ul>"
    if ds["report_page"]:
        dq += f' <a href="{report}{esc(ds["report_page"])}">report</a>'
    mark = when(ds["mark"], zone, now) if ds["mark"] else '<span class="note">none (full snapshot)</span>'
    return (
        f'<tr data-dataset="{esc(ds["dataset"])}"><td>{esc(ds["dataset"])}</td>'
        f"<td>{when(ds['last_published_at'], zone, now)}</td><td>{fresh}</td><td>{run_cell}</td>"
        f'<td class="n">{changed}</td><td class="n">{refused}</td><td>{dq}</td><td>{mark}</td></tr>'
    )
