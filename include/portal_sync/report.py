"""The run history of `portal-sync runs` (aliases `summary`, `dq-summary`) and of the demo's closing summary.

One text for what a run did and what data quality found: a line per run (outcome, checks,
rows refused and warned), then a line per data set (status, checks, the rules that hit most
rows, what it extracted and changed, its marks). The data-quality site and the status page
show the same facts from the same model (``reporting.model``).
"""

from __future__ import annotations

from datetime import datetime

from portal_sync.reporting.model import RunHistory, run_history
from portal_sync.reporting.text import format_runs, runs_json
from portal_sync.store import reads

__all__ = ["format_runs", "last_runs", "runs_json"]


def last_runs(portal_url: str, community: str | None = None, limit: int = 1,
              since: datetime | None = None) -> RunHistory:
    """The last ``limit`` runs of one community (any case) or of each, optionally only those started since a
    time; newest first within a community."""
    with reads.connect(portal_url, read_only=True) as conn:
        return run_history(conn, community.upper() if community else None, limit, since)
