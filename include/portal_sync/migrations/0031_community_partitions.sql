-- Every portal table of a data set is partitioned by community (docs/adr/0011).
--
-- A community's first load of a data set goes into a new table of its own with no index; its key and
-- indexes are built afterwards, sorted, when the table is attached, inside the publish transaction
-- (a city ledger's publish about half the time of inserting into the indexes). Each community's rows
-- then also have their own statistics, vacuum and visibility map.
--
-- Partitions live in schema portal_part, where readers have no USAGE: a reader reaches rows only through
-- the parent tables of schema portal and their row security (docs/adr/0006). The writer never owns a
-- partition: it creates and attaches them through the two narrow SECURITY DEFINER functions below, owned
-- by the owner of schema portal, which accept only a portal table of the fixed list and a community code.
--
-- An existing portal is converted in place: each table becomes the partition `<table>__legacy` for the
-- communities it already holds (one scan to validate, no copy); later communities get their own.

CREATE SCHEMA portal_part;
REVOKE ALL ON SCHEMA portal_part FROM PUBLIC;
GRANT USAGE ON SCHEMA portal_part TO portal_sync_writer;  -- to fill a new, not yet attached partition

DO $$
DECLARE
    t text;
    legacy text;
    r record;
    codes text;
BEGIN
    FOREACH t IN ARRAY ARRAY['accounts', 'residents', 'charges', 'payments', 'balances', 'assessments'] LOOP
        legacy := t || '__legacy';
        EXECUTE format('ALTER TABLE portal.%I SET SCHEMA portal_part', t);  -- its indexes move with it
        EXECUTE format('ALTER TABLE portal_part.%I RENAME TO %I', t, legacy);
        EXECUTE format('CREATE TABLE portal.%I (LIKE portal_part.%I INCLUDING DEFAULTS INCLUDING GENERATED'
                       ' INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)'
                       ' PARTITION BY LIST (community_code)', t, legacy);
        -- the same key, indexes and triggers on the parent, under their old names
        FOR r IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                 WHERE conrelid = format('portal_part.%I', legacy)::regclass AND contype IN ('p', 'u') LOOP
            EXECUTE format('ALTER TABLE portal.%I ADD CONSTRAINT %I %s', t, r.conname, r.def);
        END LOOP;
        FOR r IN SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i
                 WHERE i.indrelid = format('portal_part.%I', legacy)::regclass
                 AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid) LOOP
            EXECUTE replace(r.def, format(' ON portal_part.%s ', legacy), format(' ON portal.%I ', t));
        END LOOP;
        FOR r IN SELECT tgname, pg_get_triggerdef(oid) AS def FROM pg_trigger
                 WHERE tgrelid = format('portal_part.%I', legacy)::regclass AND NOT tgisinternal LOOP
            EXECUTE format('DROP TRIGGER %I ON portal_part.%I', r.tgname, legacy);
            EXECUTE replace(r.def, format(' ON portal_part.%s ', legacy), format(' ON portal.%I ', t));
        END LOOP;
        -- the old table is reached only through the parent from now on
        FOR r IN SELECT polname FROM pg_policy WHERE polrelid = format('portal_part.%I', legacy)::regclass LOOP
            EXECUTE format('DROP POLICY %I ON portal_part.%I', r.polname, legacy);
        END LOOP;
        EXECUTE format('ALTER TABLE portal_part.%I DISABLE ROW LEVEL SECURITY', legacy);
        EXECUTE format('REVOKE ALL ON portal_part.%I FROM PUBLIC, portal_reader, portal_sync_writer', legacy);
        EXECUTE format('SELECT string_agg(quote_literal(community_code), '', '' ORDER BY community_code)'
                       ' FROM (SELECT DISTINCT community_code FROM portal_part.%I) c', legacy) INTO codes;
        IF codes IS NULL THEN
            EXECUTE format('DROP TABLE portal_part.%I', legacy);
        ELSE
            EXECUTE format('ALTER TABLE portal.%I ATTACH PARTITION portal_part.%I FOR VALUES IN (%s)',
                           t, legacy, codes);
        END IF;
    END LOOP;
END
$$;

-- Where a community's own partition of a portal table lives: portal_part.<table>__<code in lower case>.
CREATE FUNCTION sync.community_partition_name(table_name text, code text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog AS
$fn$
    SELECT format('portal_part.%I', table_name || '__' || lower(code))
$fn$;

-- The partition of a portal table that holds a community's rows, or NULL: the community's own or the
-- legacy one (only those two are looked at, so the cost does not grow with the fleet). A bound is a list
-- of quoted codes; a community code ([A-Z][A-Z0-9_]) quoted can only match a whole element of it.
CREATE FUNCTION sync.community_partition(table_name text, code text) RETURNS regclass
LANGUAGE sql STABLE SET search_path = pg_catalog AS
$fn$
    SELECT c.oid::regclass FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
    WHERE c.oid IN (to_regclass(sync.community_partition_name(table_name, code)),
                    to_regclass(format('portal_part.%I', table_name || '__legacy')))
      AND i.inhparent = to_regclass(format('portal.%I', table_name))
      AND position(quote_literal(code) IN pg_get_expr(c.relpartbound, c.oid)) > 0
$fn$;

-- The community's own partition of a table the sync partitions, after checking both: the narrow functions
-- below accept nothing else.
CREATE FUNCTION sync.checked_partition_name(table_name text, code text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog AS
$fn$
BEGIN
    IF table_name IS NULL OR NOT table_name = ANY (ARRAY['accounts', 'residents', 'charges', 'payments', 'balances',
                                                         'assessments']) THEN
        RAISE EXCEPTION 'not a partitioned portal table the sync writes: %', quote_literal(table_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF code IS NULL OR code !~ '^[A-Z][A-Z0-9_]{1,9}$' THEN
        RAISE EXCEPTION 'not a community code: %', quote_literal(code) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN sync.community_partition_name(table_name, code);
END
$fn$;

-- A new, empty, unattached partition portal_part.<table>__<code> that the writer may fill (INSERT only).
-- Its CHECK constraint proves the partition bound, so attaching it needs no scan of its rows.
CREATE FUNCTION sync.new_community_partition(table_name text, code text) RETURNS regclass
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
DECLARE
    part text := sync.checked_partition_name(table_name, code);
BEGIN
    IF sync.community_partition(table_name, code) IS NOT NULL THEN
        RAISE EXCEPTION 'portal.% already has a partition for community %', table_name, code
            USING ERRCODE = 'duplicate_table';
    END IF;
    EXECUTE format('CREATE TABLE %s (LIKE portal.%I INCLUDING DEFAULTS INCLUDING GENERATED'
                   ' INCLUDING CONSTRAINTS INCLUDING STORAGE, CONSTRAINT community_only CHECK (community_code = %L))',
                   part, table_name, code);
    EXECUTE format('GRANT INSERT ON %s TO portal_sync_writer', part);
    RETURN part::regclass;
END
$fn$;

-- Attach the community's new partition: PostgreSQL builds the parent's key and indexes on it (sorted
-- builds of the rows already there) and clones its triggers; from then on it is reached only through
-- the parent, under its row security.
CREATE FUNCTION sync.attach_community_partition(table_name text, code text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
DECLARE
    part text := sync.checked_partition_name(table_name, code);
BEGIN
    EXECUTE format('ALTER TABLE portal.%I ATTACH PARTITION %s FOR VALUES IN (%L)', table_name, part, code);
    EXECUTE format('REVOKE ALL ON %s FROM portal_sync_writer', part);
END
$fn$;

-- Statistics of one community's rows: ANALYZE of a partitioned parent samples every partition, so the
-- sync analyses the community's own partition. It replaces sync.analyze_portal_table (migration 0013),
-- whose ANALYZE of a whole parent would now sample every community's partitions.
CREATE FUNCTION sync.analyze_community_rows(table_name text, code text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
DECLARE
    part regclass;
BEGIN
    PERFORM sync.checked_partition_name(table_name, code);
    part := sync.community_partition(table_name, code);
    IF part IS NOT NULL THEN
        EXECUTE format('ANALYZE %s', part);
    END IF;
END
$fn$;
DROP FUNCTION sync.analyze_portal_table(text);

DO $$
DECLARE
    owner_name name := (SELECT pg_catalog.pg_get_userbyid(nspowner) FROM pg_catalog.pg_namespace
                        WHERE nspname = 'portal');
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['sync.new_community_partition(text, text)', 'sync.attach_community_partition(text, text)',
                              'sync.analyze_community_rows(text, text)'] LOOP
        IF owner_name <> current_user THEN
            EXECUTE format('ALTER FUNCTION %s OWNER TO %I', fn, owner_name);
        END IF;
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO portal_sync_writer', fn);
    END LOOP;
    IF owner_name <> current_user THEN
        EXECUTE format('ALTER SCHEMA portal_part OWNER TO %I', owner_name);
    END IF;
END
$$;
-- The naming and lookup functions only read the catalog and keep PUBLIC's EXECUTE: USAGE on schema sync
-- (the writer's and the owner's) is what reaches them, and the definer functions call them as the owner.

SELECT sync.secure_portal_tables();
