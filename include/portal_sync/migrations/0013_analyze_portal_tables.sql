-- Statistics of the portal tables, refreshed by the sync after a big publish (publish.refresh_statistics).
--
-- PostgreSQL 15 lets only a table's owner (or a superuser) ANALYZE it, and skips the table with a mere
-- WARNING otherwise. The sync runs as portal_sync_writer, which owns no portal table (docs/adr/0006), so
-- its ANALYZE did nothing. This narrow SECURITY DEFINER function, owned by the owner of schema portal,
-- analyses one portal table the sync writes, named from a fixed list: no other table, no caller text in
-- the statement. Only the writer group may execute it.

CREATE FUNCTION sync.analyze_portal_table(table_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    IF table_name IS NULL OR NOT table_name = ANY (ARRAY['communities', 'accounts', 'residents', 'charges',
                                                         'payments', 'balances', 'assessments']) THEN
        RAISE EXCEPTION 'sync.analyze_portal_table: % is not a portal table the sync writes', quote_literal(table_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ANALYZE portal.%I', table_name);
END
$fn$;

DO $$
DECLARE
    owner_name name := (SELECT pg_catalog.pg_get_userbyid(nspowner) FROM pg_catalog.pg_namespace
                        WHERE nspname = 'portal');
BEGIN
    IF owner_name <> current_user THEN
        EXECUTE format('ALTER FUNCTION sync.analyze_portal_table(text) OWNER TO %I', owner_name);
    END IF;
END
$$;

REVOKE ALL ON FUNCTION sync.analyze_portal_table(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync.analyze_portal_table(text) TO portal_sync_writer;
