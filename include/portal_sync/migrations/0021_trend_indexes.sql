-- The 30-day trend charts of the data-quality report and the status page read one community's failing
-- checks and published data sets by time; without these they scan every community's history.
CREATE INDEX IF NOT EXISTS dq_results_failed ON sync.dq_results (community_code, validated_at)
    INCLUDE (dataset, rule, severity, failing_rows) WHERE NOT success;
CREATE INDEX IF NOT EXISTS run_datasets_published ON sync.run_datasets (community_code, updated_at)
    INCLUDE (dataset, rows_inserted, rows_updated, rows_deleted) WHERE phase = 'published';
