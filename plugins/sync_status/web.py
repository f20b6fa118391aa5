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
autoescaped); the data-quality report site of each community is served
read-only from ``portal_sync.dq_report.report_dir`` so its links work in the browser.
"""

from __future__ import annotations

import logging
import mimetypes
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
from portal_sync.dq_report import report_dir
from portal_sync.explain import explain
from portal_sync.reporting.html import status_page
from portal_sync.status import overview

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
    def status(user: GetUserDep) -> HTMLResponse:
        config = _readable_config(user)
        try:
            return _html(_STATUS, config, data=overview(_portal_url(), config))
        except Exception as exc:  # the page must say what is wrong, not fail with a bare 500
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


def _html(title: str, config: LoadedConfig, **page: Any) -> HTMLResponse:
    """A page of this app (templates in portal_sync.reporting), with its security headers."""
    return HTMLResponse(status_page(title, config, **page),
                        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff"})
