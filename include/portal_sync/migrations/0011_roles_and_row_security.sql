-- Database roles and row-level security of the portal (docs/adr/0006).
--
--   portal_sync_writer    NOLOGIN group of the sync: DML on portal.* and sync.*, its own tables
--                         in stage; sees every community's rows (policy sync_writer).
--   portal_reader         NOLOGIN group: SELECT on portal.*, only the rows of the communities whose
--                         reader role the session's user is a member of (policy community_reader).
--   portal_reader_<code>  one NOLOGIN group per community, member of portal_reader; made by
--                         portal_sync.roles (`portal-sync roles`). Logins are granted these groups.
--
-- Roles are cluster-wide: they are created only when missing, so the portal databases of a
-- cluster (and test databases) share them; privileges belong to the database and vanish with it.
-- This migration runs as the admin that owns the tables; the writer owns none of them.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['portal_sync_writer', 'portal_reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS'
                               ' NOREPLICATION', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database of the cluster
            END;
        END IF;
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = name
                   AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls OR rolreplication)) THEN
            EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION', name);
        END IF;
    END LOOP;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO portal_sync_writer', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO portal_reader', current_database());
END
$$;

REVOKE ALL ON SCHEMA portal, sync, stage FROM PUBLIC;
GRANT USAGE ON SCHEMA portal, sync TO portal_sync_writer;
GRANT USAGE, CREATE ON SCHEMA stage TO portal_sync_writer;  -- per-run tables: it owns and drops them
GRANT USAGE ON SCHEMA portal TO portal_reader;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA portal, sync TO portal_sync_writer;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA portal, sync TO portal_sync_writer;
GRANT EXECUTE ON FUNCTION sync.is_money(text) TO portal_sync_writer;
-- Tables and sequences that later migrations (run by this same admin) add: the writer may use them.
-- Readers get nothing by default: a new portal table stays invisible to them until
-- sync.secure_portal_tables() has put row security on it.
ALTER DEFAULT PRIVILEGES IN SCHEMA portal, sync
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO portal_sync_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA portal, sync
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO portal_sync_writer;

-- Row security on every table of schema portal; idempotent (a migration that adds a portal table
-- ends with `SELECT sync.secure_portal_tables();`, and `portal-sync roles` runs it too). A table
-- without community_code cannot be scoped: readers get no grant on it (and a warning is raised).
CREATE FUNCTION sync.secure_portal_tables() RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog AS
$fn$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid, c.relname, c.relrowsecurity,
               EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'community_code'
                       AND a.attnum > 0 AND NOT a.attisdropped) AS scoped
        FROM pg_class c
        WHERE c.relnamespace = 'portal'::regnamespace AND c.relkind IN ('r', 'p')
        ORDER BY c.relname
    LOOP
        IF NOT t.relrowsecurity THEN
            EXECUTE format('ALTER TABLE portal.%I ENABLE ROW LEVEL SECURITY', t.relname);
        END IF;
        -- grant only what is missing: a repeated call changes no catalog row
        IF NOT (has_table_privilege('portal_sync_writer', t.oid, 'SELECT')
                AND has_table_privilege('portal_sync_writer', t.oid, 'INSERT')
                AND has_table_privilege('portal_sync_writer', t.oid, 'UPDATE')
                AND has_table_privilege('portal_sync_writer', t.oid, 'DELETE')) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON portal.%I TO portal_sync_writer', t.relname);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = t.oid AND polname = 'sync_writer') THEN
            EXECUTE format('CREATE POLICY sync_writer ON portal.%I FOR ALL TO portal_sync_writer'
                           ' USING (true) WITH CHECK (true)', t.relname);
        END IF;
        IF t.scoped THEN
            -- The session's user sees a community's rows when it is a member of the community's
            -- reader role; membership is granted only by an admin, so a reader cannot widen it.
            -- Uncorrelated: evaluated once per query, then a hashed lookup per row.
            IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = t.oid AND polname = 'community_reader') THEN
                EXECUTE format(
                    'CREATE POLICY community_reader ON portal.%I FOR SELECT TO PUBLIC USING (community_code IN ('
                    ' SELECT upper(substr(r.rolname, 15)) FROM pg_catalog.pg_roles r'
                    ' WHERE r.rolname ~ ''^portal_reader_[a-z][a-z0-9_]{1,9}$'''
                    ' AND pg_catalog.pg_has_role(current_user, r.oid, ''MEMBER'')))', t.relname);
            END IF;
            IF NOT has_table_privilege('portal_reader', t.oid, 'SELECT') THEN
                EXECUTE format('GRANT SELECT ON portal.%I TO portal_reader', t.relname);
            END IF;
            RETURN NEXT t.relname;
        ELSE
            EXECUTE format('REVOKE ALL ON portal.%I FROM portal_reader', t.relname);
            RAISE WARNING 'portal.% has no community_code column: portal readers get no access to it', t.relname;
        END IF;
    END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION sync.secure_portal_tables() FROM PUBLIC;

SELECT sync.secure_portal_tables();
