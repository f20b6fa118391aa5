-- The portal tables of the contract (schema portal), and the sync's own schemas:
-- sync (state, audit, refusals) and stage (per-run UNLOGGED tables, dropped after each run).

CREATE SCHEMA IF NOT EXISTS portal;
CREATE SCHEMA IF NOT EXISTS sync;
CREATE SCHEMA IF NOT EXISTS stage;

CREATE TABLE portal.communities (
    community_code text PRIMARY KEY,
    name           text NOT NULL,
    time_zone      text NOT NULL,
    synced_at      timestamptz,
    deleted_at     timestamptz
);

CREATE TABLE portal.accounts (
    community_code        text   NOT NULL,
    account_id            bigint NOT NULL,
    account_number        text   NOT NULL,
    account_number_digits text   NOT NULL,
    resident_id           bigint,
    landlord_resident_id  bigint,
    master_account_id     bigint,
    customer_type         text,
    status                text   NOT NULL,
    online_access         boolean NOT NULL,
    portal_visible        boolean NOT NULL,
    house_number          text,
    street_name           text,
    unit                  text,
    city                  text,
    state                 text,
    zip                   text,
    service_address       text,
    connect_date          date,
    final_bill_date       date,
    deleted_at            timestamptz,
    PRIMARY KEY (community_code, account_id)
);
CREATE INDEX accounts_digits ON portal.accounts (community_code, account_number_digits);
CREATE INDEX accounts_resident ON portal.accounts (community_code, resident_id);
CREATE INDEX accounts_landlord ON portal.accounts (community_code, landlord_resident_id)
    WHERE landlord_resident_id IS NOT NULL;

CREATE TABLE portal.residents (
    community_code text   NOT NULL,
    resident_id    bigint NOT NULL,
    kind           text   NOT NULL,
    first_name     text,
    middle_name    text,
    last_name      text,
    business_name  text,
    display_name   text,
    mail_address1  text,
    mail_address2  text,
    mail_city      text,
    mail_state     text,
    mail_zip       text,
    email          text,
    phone          text,
    deleted_at     timestamptz,
    PRIMARY KEY (community_code, resident_id)
);

CREATE TABLE portal.charges (
    community_code   text   NOT NULL,
    charge_id        bigint NOT NULL,
    account_id       bigint NOT NULL,
    charge_type      text   NOT NULL,
    service_code     text,
    description      text,
    amount           numeric(12,2) NOT NULL,
    transaction_date date   NOT NULL,
    due_date         date,
    period           text,
    reference_number text,
    posted_at        timestamptz NOT NULL,
    voided           boolean NOT NULL DEFAULT false,
    voids_charge_id  bigint,
    archived_at      timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (community_code, charge_id)
);
CREATE INDEX charges_account ON portal.charges (community_code, account_id);

CREATE TABLE portal.payments (
    community_code      text   NOT NULL,
    payment_id          bigint NOT NULL,
    account_id          bigint NOT NULL,
    receipt_number      text,
    amount              numeric(12,2) NOT NULL,
    confirmation_number text,
    method              text   NOT NULL,
    paid_at             timestamptz NOT NULL,
    status              text   NOT NULL,
    status_changed_at   timestamptz NOT NULL,
    deleted_at          timestamptz,
    PRIMARY KEY (community_code, payment_id)
);
CREATE INDEX payments_account ON portal.payments (community_code, account_id);

CREATE TABLE portal.balances (
    community_code      text   NOT NULL,
    account_id          bigint NOT NULL,
    as_of               timestamptz NOT NULL,
    current_amount      numeric(12,2) NOT NULL,
    past_due_30         numeric(12,2) NOT NULL,
    past_due_60         numeric(12,2) NOT NULL,
    past_due_90         numeric(12,2) NOT NULL,
    past_due_120        numeric(12,2) NOT NULL,
    total_due           numeric(12,2) NOT NULL,
    last_bill_date      date,
    last_bill_amount    numeric(12,2),
    due_date            date,
    last_payment_date   date,
    last_payment_amount numeric(12,2),
    delinquent          boolean NOT NULL,
    payment_status      text   NOT NULL,
    deleted_at          timestamptz,
    PRIMARY KEY (community_code, account_id)
);

CREATE TABLE portal.assessments (
    community_code     text   NOT NULL,
    assessment_id      bigint NOT NULL,
    parcel_number      text,
    district           text,
    description        text,
    owner_resident_id  bigint NOT NULL,
    location_id        bigint,
    original_amount    numeric(12,2) NOT NULL,
    principal_balance  numeric(12,2) NOT NULL,
    installment_amount numeric(12,2) NOT NULL,
    next_due_date      date,
    status             text   NOT NULL,
    deleted_at         timestamptz,
    PRIMARY KEY (community_code, assessment_id)
);
CREATE INDEX assessments_owner ON portal.assessments (community_code, owner_resident_id);

-- One row per run of a community's sync.
CREATE TABLE sync.runs (
    run_key        text PRIMARY KEY,
    community_code text NOT NULL,
    airflow_run_id text,
    datasets       text[] NOT NULL,
    source_org_name text,
    time_zone      text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    finished_at    timestamptz,
    outcome        text NOT NULL DEFAULT 'running',  -- running | published | failed | nothing_published
    error          text
);
CREATE INDEX runs_community ON sync.runs (community_code, started_at DESC);

-- The audit: one row per run and data set, filled in as the run goes.
CREATE TABLE sync.run_datasets (
    run_key         text NOT NULL REFERENCES sync.runs ON DELETE CASCADE,
    community_code  text NOT NULL,
    dataset         text NOT NULL,
    phase           text NOT NULL DEFAULT 'planned', -- planned | staged | validated | published | failed
    rows_extracted  bigint,
    rows_refused    bigint,
    rows_warned     bigint,
    rows_inserted   bigint,
    rows_updated    bigint,
    rows_unchanged  bigint,
    rows_deleted    bigint,
    rows_restored   bigint,
    rows_archived   bigint,
    extract_seconds numeric(10,3),
    validate_seconds numeric(10,3),
    publish_seconds numeric(10,3),
    staging_tables  text[] NOT NULL DEFAULT '{}',
    error           text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, dataset)
);

-- Rows a run refused (or warned about), with the rule; the refused ones do not publish.
CREATE TABLE sync.run_findings (
    run_key        text NOT NULL REFERENCES sync.runs ON DELETE CASCADE,
    community_code text NOT NULL,
    dataset        text NOT NULL,
    row_id         bigint NOT NULL,
    row_key        text,
    rule           text NOT NULL,
    severity       text NOT NULL,  -- refuse | warn
    reason         text NOT NULL,
    found_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_findings_run ON sync.run_findings (run_key, dataset, severity, row_id);

-- Exact checks of staged text, without exceptions (a cast that fails would abort the publish).
CREATE FUNCTION sync.is_money(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT v ~ '^[+-]?[0-9]{1,10}(\.[0-9]{1,2}0*)?$' OR v ~ '^[+-]?[0-9]{0,10}\.[0-9]{1,2}0*$' $$;
