"""The sync status page of the Airflow UI (package imported by ``sync_status_plugin.py``).

``web`` holds the FastAPI app; the queries behind it live in ``portal_sync.status`` and
``portal_sync.explain``, which know nothing of Airflow.
"""
