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
Airflow connection ``portal_db``, and ``portal_sync.reporting`` renders the pages (Jinja2,
autoescaped). The data-quality report of each community (``/reports/<code>/``: its index, run
pages, month pages and each run's GX result JSON) is rendered from the database on each request
(``portal_sync.dq_report.site_file``, a read-only connection), so it is whole whichever Celery worker
ran a run and wrote the offline site on its own disk; the pages keep the site's relative links and send
the policy of their own ``<meta>`` as the header. Any other file of the offline site is still served
read-only from ``portal_sync.dq_report.report_dir``.

Pages. ``/`` is the fleet summary (``status.fleet``: one line per community, worst first, in one
statement whatever the fleet's size), filtered by ``state`` and ``q`` (code or name) and paged by
``page``, plain GET forms and links; ``/?community=CODE`` is one community's detail (``status.overview``).
``/api/fleet`` is the summary as JSON; ``/api/status`` the detail (of every readable community without
``community``: a query per community, meant for one or a few).
"""

from __future__ import annotations

import logging
import mimetypes
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from airflow.api_fastapi.app import API_ROOT_PATH, get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from portal_sync.config import Community, LoadedConfig, load_config
from portal_sync.dq_report import content_security_policy, has_page, report_dir, run_page, site_file
from portal_sync.explain import explain
from portal_sync.reporting.html import status_page
from portal_sync.status import PER_PAGE, STATES, fleet, overview
from portal_sync.store import reads

log = logging.getLogger(__name__)

# get_user's answers when there is no usable login (missing, expired or forged token).
_LOGIN_FAILURES = {(401, "Not authenticated"), (401, "Token Expired"), (403, "Invalid JWT token")}
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'self'; "
        "base-uri 'none'")
_STATUS = "Caselle sync status"
_EXPLAIN = "Why isn't this customer in the portal?"


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
    def status(user: GetUserDep, community: str = Query(""), state: str = Query(""), q: str = Query(""),
               page: str = Query("1")) -> HTMLResponse:
        """The fleet summary (filters ``state`` and ``q``, page ``page``), or one community's detail."""
        config, configured = _readable(user)
        if community.strip():
            return _community_page(config, community)
        if state and state not in STATES:
            return _html(_STATUS, config, status_code=400,
                         error=f"Unknown state {state!r}: one of {', '.join(STATES)}.")
        try:
            summary = fleet(_portal_url(), config, state=state or None, match=q, page=_page_number(page),
                            configured=configured)
        except Exception as exc:  # the page must say what is wrong, not fail with a bare 500
            log.exception("sync status: cannot read the portal database")
            return _html(_STATUS, config, error=f"Cannot read the portal database: {exc}")
        return _html(_STATUS, config, fleet=summary)

    def _community_page(config: LoadedConfig, community: str) -> HTMLResponse:
        code = community.strip().upper()
        if code not in {c.code for c in config.communities}:
            return _html(_STATUS, config, status_code=404, error=f"No community {community!r} you may read.")
        try:
            data = _report_links(overview(_portal_url(), config, community=code), config)
            return _html(_STATUS, config, data=data, drilldown=True, community=code)
        except Exception as exc:
            log.exception("sync status: cannot read the portal database")
            return _html(_STATUS, config, error=f"Cannot read the portal database: {exc}")

    @app.get("/explain", response_class=HTMLResponse)
    def explain_page(user: GetUserDep, community: str = Query(""), account: str = Query("")) -> HTMLResponse:
        config = _readable_config(user)
        asked = {"community": community, "account": account}
        if not community or not account:
            return _html(_EXPLAIN, config, **asked)
        try:
            return _html(_EXPLAIN, config, answer=explain(_portal_url(), community, account, config), **asked)
        except Exception as exc:
            log.exception("sync status: explain failed")
            return _html(_EXPLAIN, config, error=f"Cannot read the portal database: {exc}", **asked)

    @app.get("/api/status")
    def status_json(user: GetUserDep, community: str | None = None) -> dict[str, Any]:
        config = _readable_config(user)
        if community and community.upper() not in {c.code for c in config.communities}:
            raise HTTPException(404, f"no community {community!r} you may read")
        return _report_links(overview(_portal_url(), config, community=community), config)

    @app.get("/api/fleet")
    def fleet_json(user: GetUserDep, state: str | None = None, q: str | None = None, page: int = 1,
                   per_page: int = Query(PER_PAGE, ge=1, le=5000)) -> dict[str, Any]:
        """The fleet summary as the page shows it (worst first, filtered, one page), as JSON."""
        config, configured = _readable(user)
        if state and state not in STATES:
            raise HTTPException(400, f"unknown state {state!r}: one of {', '.join(STATES)}")
        return fleet(_portal_url(), config, state=state, match=q, page=page, per_page=per_page,
                     configured=configured)

    @app.get("/api/explain")
    def explain_json(user: GetUserDep, community: str, account: str) -> dict[str, Any]:
        return explain(_portal_url(), community, account, _readable_config(user)).as_dict()

    @app.get("/reports/{code}")
    def report_root(user: GetUserDep, code: str) -> Response:
        """The report's index wants the trailing slash: its links are relative to the site root."""
        _readable_community(user, code)
        return RedirectResponse(f"{code}/", status_code=308)

    @app.get("/reports/{code}/{path:path}")
    def report(user: GetUserDep, code: str, path: str) -> Response:
        """A page of the community's data-quality report (or a run's GX result JSON), rendered from the
        database; any other file from this host's copy of the offline site."""
        community = _readable_community(user, code)
        try:
            with reads.connect(_portal_url(), read_only=True) as conn:
                found = site_file(conn, community.code, path, keep_days=community.report_keep_days)
        except LookupError as exc:
            raise HTTPException(404, f"no such report page: {exc}") from None
        except Exception as exc:
            log.exception("sync status: cannot read the portal database for the report")
            raise HTTPException(503, f"cannot read the portal database: {exc}") from None
        if found is not None:
            media, body = found
            return _report_page(body) if media == "text/html" else Response(body, media_type=media, headers={
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'", "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff"})
        root = report_dir(community.code).resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise HTTPException(404, "no such report file")
        media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return FileResponse(target, media_type=media, headers={"X-Content-Type-Options": "nosniff",
                                                               "Cache-Control": "no-store"})

    return app


# --------------------------------------------------------------------------- access


def _can_read(user: BaseUser, community: Community) -> bool:
    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=community.dag_id), user=user,
    )


def _readable_community(user: BaseUser, code: str) -> Community:
    """The community of a report URL if the user may read it; 404 otherwise, the same as for one that does not
    exist (the answer does not tell which communities there are)."""
    for community in _readable_config(user).communities:
        if community.code == code.upper():
            return community
    raise HTTPException(404, "no such report")


def _readable_config(user: BaseUser) -> LoadedConfig:
    """The configuration narrowed to the communities whose DAG runs the user may read (read per request:
    a new community shows without restarting the API server)."""
    return _readable(user)[0]


def _readable(user: BaseUser) -> tuple[LoadedConfig, frozenset[str]]:
    """The readable configuration (``_readable_config``) and every configured code: a community the user may
    not read is still configured, not one the summary lists as having runs but no configuration."""
    config = load_config()
    readable = LoadedConfig(tuple(c for c in config.communities if _can_read(user, c)), config.errors)
    return readable, frozenset(c.code for c in config.communities)


def _page_number(text: str) -> int:
    """The ``page`` query parameter; anything but a positive number is the first page."""
    try:
        return max(1, int(text))
    except ValueError:
        return 1


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


def _html(title: str, config: LoadedConfig, status_code: int = 200, **page: Any) -> HTMLResponse:
    """A page of this app (templates in portal_sync.reporting), with its security headers."""
    return HTMLResponse(status_page(title, config, **page), status_code=status_code,
                        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff"})


def _report_page(page: str) -> HTMLResponse:
    """A report page as the offline file is: its own policy (style and script hashes, nothing loads) as the
    header too, plus what only a header can say (framed by the Airflow UI only)."""
    return HTMLResponse(page, headers={
        "Content-Security-Policy": f"{content_security_policy(page)}; frame-ancestors 'self'",
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


def _report_links(data: dict[str, Any], config: LoadedConfig) -> dict[str, Any]:
    """Point the detail's report links at the pages served from the database: a community with a run has an
    index, and a data set's last run has a page while the report keeps it, whether or not this host holds
    the offline files (``status.community_status`` links only the files it finds here)."""
    now = datetime.now(UTC)
    for com in data.get("communities", []):
        keep_days = config.get(com["code"]).report_keep_days
        com["report_index"] = "index.html" if com.get("last_run") else None
        for ds in com.get("datasets", []):
            run = ds.get("last_run")
            kept = run and run.get("started_at") and has_page(run["started_at"], keep_days, now)
            ds["report_page"] = run_page(run["run_key"]) if kept else None
    return data
