"""The run store: every write, and the pipeline's reads, of the ``sync`` schema.

The run record and its per-data-set rows are both the audit trail analysts read and the
hand-over between tasks: a task on another worker learns what the previous one staged
from here, never from a local file or process memory.

- ``runs``: sync.runs and sync.run_datasets (typed as ``RunRecord`` and ``DatasetRun``)
- ``quality``: sync.run_findings, sync.dq_results and sync.quarantine
- ``marks``: sync.watermarks, the high-water marks of the incremental data sets
- ``reads``: the reporting queries (status, data-quality site, explain, summaries)
- ``alerts``: sync.alerts, the alert incidents (one notice per incident, one on recovery)

Every function takes an open psycopg connection first and commits nothing on its own
unless its job is a transaction (``runs.start_run``).
"""

from portal_sync.store.runs import DatasetRun, RunRecord

__all__ = ["DatasetRun", "RunRecord"]
