"""Surfaces configuration errors in the Airflow UI as an import error of this file.

The communities that validate still get their DAGs from caselle_sync.py; this file
holds no DAG and fails to import only while some community is misconfigured, so the
error (naming the community and the field) shows in the UI's import-error list.
"""

from __future__ import annotations

from portal_sync.config import load_config

_errors = load_config().errors
if _errors:
    raise ValueError(
        "communities configuration has errors (these communities are not synced):\n"
        + "\n".join(f"- {error}" for error in _errors)
    )
