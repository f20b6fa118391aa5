-- Runs whose process died (killed task, lost worker) are found and closed by the sweep
-- (stage.sweep_orphans): a live run holds a session-level advisory lock (store.runs.hold_run_lock), and
-- lock_held_at says when a process of the run last took it. A run without it predates the locks.
ALTER TABLE sync.runs ADD COLUMN lock_held_at timestamptz;
COMMENT ON COLUMN sync.runs.outcome IS
    'running | published | partly_published | nothing_published | dry_run | failed | abandoned (its process died)';
