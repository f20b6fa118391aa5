-- Old account numbers, so support can answer "why isn't this customer in the portal?" for a
-- resident who types the number from an old bill: Caselle rewrites CustomerNumber in place
-- (same CustomerID), and the portal row follows, losing the old number. A trigger records
-- every change of portal.accounts.account_number, whatever code path publishes it.

CREATE TABLE sync.account_number_history (
    community_code    text        NOT NULL,
    account_id        bigint      NOT NULL,
    old_number        text        NOT NULL,
    old_number_digits text        NOT NULL,
    new_number        text        NOT NULL,
    changed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_code, account_id, changed_at, old_number)
);
CREATE INDEX account_number_history_digits
    ON sync.account_number_history (community_code, old_number_digits);

CREATE FUNCTION sync.record_account_number_change() RETURNS trigger
LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO sync.account_number_history
        (community_code, account_id, old_number, old_number_digits, new_number, changed_at)
    VALUES (NEW.community_code, NEW.account_id, OLD.account_number, OLD.account_number_digits,
            NEW.account_number, now())
    ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;

-- "UPDATE OF account_number" fires for every upsert that lists the column; the WHEN clause
-- keeps the cost to rows whose number really changed.
CREATE TRIGGER accounts_number_history
    AFTER UPDATE OF account_number ON portal.accounts
    FOR EACH ROW
    WHEN (OLD.account_number IS DISTINCT FROM NEW.account_number)
    EXECUTE FUNCTION sync.record_account_number_change();
