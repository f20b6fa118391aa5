-- Alert incidents (portal_sync.alerts, docs/alerts.md): one row per incident of a community and kind
-- (sync_failed: data sets a run did not publish; stale: data sets past their freshness limit). At most one
-- incident of a community and kind is open (closed_at IS NULL): the partial unique index is what makes two
-- callbacks of the same failure agree on one notification (INSERT ... ON CONFLICT DO NOTHING). Closed
-- incidents stay as the alert history.
CREATE TABLE sync.alerts (
    incident_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    community_code text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('sync_failed', 'stale')),
    datasets jsonb NOT NULL DEFAULT '{}'::jsonb,  -- data set -> reason, as last seen while open
    opened_at timestamptz NOT NULL DEFAULT now(),
    opened_run_id text,
    last_run_id text,
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    notified_at timestamptz,  -- the last notice sent for it (opening, new data set, reminder)
    notices int NOT NULL DEFAULT 0,
    closed_at timestamptz,
    closed_run_id text
);
CREATE UNIQUE INDEX alerts_one_open ON sync.alerts (community_code, kind) WHERE closed_at IS NULL;
CREATE INDEX alerts_history ON sync.alerts (community_code, opened_at DESC);
COMMENT ON TABLE sync.alerts IS
    'Alert incidents per community and kind (sync_failed | stale); open while closed_at IS NULL';
GRANT SELECT, INSERT, UPDATE, DELETE ON sync.alerts TO portal_sync_writer;
