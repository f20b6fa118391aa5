"""The sync status page of the Airflow UI (package imported by ``sync_status_plugin.py``).

``web`` holds the FastAPI app; what the pages say comes from ``portal_sync.status`` and
``portal_sync.explain``, and how they look from ``portal_sync.reporting`` (templates), which
know nothing of Airflow.
"""
