"""Airflow plugin: a "Caselle sync status" page in the Airflow UI.

Thin on purpose. Every Airflow component (scheduler, DAG processor, each task process)
imports the plugins folder, but only the API server serves the page: so this file imports
nothing but ``AirflowPlugin`` and touches no database. The FastAPI app is built on the first
request (``LazyApp``), inside the API server, from ``sync_status.web``.

* ``fastapi_apps`` mounts the app at ``/sync-status`` on the API server. Airflow does not
  authenticate plugin apps: the app checks the Airflow login itself (see ``sync_status.web``).
* ``external_views`` adds "Sync status" to the Browse menu; the UI shows the app in a frame
  at ``/plugin/sync-status``. ``href`` has no leading slash so it resolves against the UI's
  base URL (an Airflow served under a path prefix works too).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

URL_PREFIX = "/sync-status"


class LazyApp:
    """An ASGI app that imports and builds the real one on its first request.

    Keeps FastAPI, Airflow's API security module and psycopg out of every process that merely
    loads plugins (each task would pay for them), and keeps import time free of I/O.
    """

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            module, _, name = self.factory.partition(":")
            self._app = getattr(importlib.import_module(module), name)()
        await self._app(scope, receive, send)


class SyncStatusPlugin(AirflowPlugin):
    """Sync status per community and data set, and "why isn't this customer in the portal?"."""

    name = "caselle_sync_status"
    fastapi_apps = [
        {"app": LazyApp("sync_status.web:create_app"), "url_prefix": URL_PREFIX, "name": "Caselle sync status"},
    ]
    external_views = [
        {
            "name": "Sync status",
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "sync-status",
            "destination": "nav",
            "category": "browse",
        },
    ]
