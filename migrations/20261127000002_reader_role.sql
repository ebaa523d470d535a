-- A read-only role for the API. It cannot log in by itself: grant it to a login role, e.g.
--   CREATE ROLE tickpipe_api LOGIN PASSWORD '...' IN ROLE tickpipe_reader;
-- (the compose file's PostgreSQL init script does exactly that). Roles are cluster-wide, so the
-- creation tolerates a concurrent migration of another database having created it first.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tickpipe_reader') THEN
        CREATE ROLE tickpipe_reader NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO tickpipe_reader;
GRANT SELECT ON window_prices, latest_windows TO tickpipe_reader;
