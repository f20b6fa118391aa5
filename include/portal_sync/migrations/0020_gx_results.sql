-- Great Expectations results of every run: one row per (run, data set, expectation), and GX's own
-- result JSON per (run, data set) for download. Retention as the other report tables
-- (store/gx_results.delete_before). The writer role gets its grants from 0011's default privileges.
CREATE TABLE sync.gx_results (
    run_key            text NOT NULL REFERENCES sync.runs ON DELETE CASCADE,
    community_code     text NOT NULL,
    dataset            text NOT NULL,
    expectation        text NOT NULL,      -- "<rule>:<subject>" of the stored suite, or a table check
    rule               text NOT NULL,
    kind               text NOT NULL,      -- row | table
    expectation_type   text NOT NULL,
    kwargs             jsonb NOT NULL,
    success            boolean NOT NULL,
    observed_value     jsonb,
    element_count      bigint,
    unexpected_count   bigint,
    unexpected_percent double precision,
    sample_keys        jsonb NOT NULL DEFAULT '[]',
    severity           text NOT NULL,      -- refuse | warn | fail (ours; GX's is critical/warning)
    mostly             double precision,
    description        text NOT NULL DEFAULT '',
    validated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, dataset, expectation)
);
CREATE INDEX gx_results_community ON sync.gx_results (community_code, validated_at DESC);

CREATE TABLE sync.gx_validations (
    run_key        text NOT NULL REFERENCES sync.runs ON DELETE CASCADE,
    community_code text NOT NULL,
    dataset        text NOT NULL,
    rows_validated bigint NOT NULL,
    result         jsonb NOT NULL,         -- {"rows": <suite validation result>, "table": <...>}
    validated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, dataset)
);
