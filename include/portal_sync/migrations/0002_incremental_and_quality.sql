-- Incremental sync state (windows, marks, read times) and data-quality results.

-- When the source read that produced a row's current version began: an older read
-- never overwrites a newer one (see docs/adr/0004).
ALTER TABLE portal.accounts    ADD COLUMN source_read_at timestamptz;
ALTER TABLE portal.residents   ADD COLUMN source_read_at timestamptz;
ALTER TABLE portal.charges     ADD COLUMN source_read_at timestamptz;
ALTER TABLE portal.payments    ADD COLUMN source_read_at timestamptz;
ALTER TABLE portal.balances    ADD COLUMN source_read_at timestamptz;
ALTER TABLE portal.assessments ADD COLUMN source_read_at timestamptz;

-- High-water mark per community and data set: the end of the last published window.
CREATE TABLE sync.watermarks (
    community_code text NOT NULL,
    dataset        text NOT NULL,
    mark           timestamptz NOT NULL,
    run_key        text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_code, dataset)
);

ALTER TABLE sync.run_datasets
    ADD COLUMN mode text,                       -- full | window | reconcile
    ADD COLUMN window_start timestamptz,
    ADD COLUMN window_end timestamptz,
    ADD COLUMN mark_before timestamptz,
    ADD COLUMN mark_after timestamptz,
    ADD COLUMN extract_started_at timestamptz,
    ADD COLUMN rows_superseded bigint;

-- Rows refused by data quality, kept until a later run accepts them (then removed).
CREATE TABLE sync.quarantine (
    community_code text NOT NULL,
    dataset        text NOT NULL,
    row_key        text NOT NULL,
    rule           text NOT NULL,
    reason         text NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    first_run_key  text NOT NULL,
    last_run_key   text NOT NULL,
    PRIMARY KEY (community_code, dataset, row_key, rule)
);

-- One row per run, data set and check: what analysts and dashboards read.
CREATE TABLE sync.dq_results (
    run_key        text NOT NULL REFERENCES sync.runs ON DELETE CASCADE,
    community_code text NOT NULL,
    dataset        text NOT NULL,
    rule           text NOT NULL,
    description    text NOT NULL,
    kind           text NOT NULL,      -- row | table
    severity       text NOT NULL,      -- refuse | warn | fail
    success        boolean NOT NULL,
    failing_rows   bigint NOT NULL DEFAULT 0,
    element_count  bigint,
    observed       jsonb,
    validated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, dataset, rule)
);
CREATE INDEX dq_results_community ON sync.dq_results (community_code, validated_at DESC);
