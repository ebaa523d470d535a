-- History at any size: the windows and their rollups, partitioned by time.
--
-- Rollups: `bars_1m`, `bars_5m`, `bars_1h` and `bars_1d` hold the same columns as `window_prices`,
-- each row a window of the table's width (a bar), kept by the aggregator in the same transaction as
-- the windows it folds (crates/store/src/write.rs) with the same merge: sums and counts add, min and
-- max, the open of the smallest key, the close of the largest. A bar therefore equals the fold of its
-- windows at every commit, whichever partition, instance or replay contributed first. A rollup is
-- kept only when its width is a multiple of the window width and wider (crates/store/src/history.rs).
--
-- Partitions: every table is partitioned by range of `window_start`, in epoch-aligned spans of
-- `history_tables.partition_secs`, created ahead by the aggregator and on demand by each commit
-- (`tickpipe_ensure_partitions`), so no write fails for want of one. Retention drops whole
-- partitions (`tickpipe_drop_partitions`) and records how far it dropped, which the API reads to
-- answer a request for older history with a clear refusal instead of an empty page.
--
-- Upgrade: a database written before this migration holds one unpartitioned `window_prices`. Its
-- rows are copied into the partitioned table and every rollup is folded from them, in this
-- migration's transaction (minutes for tens of millions of rows; see docs/operations.md).

CREATE TABLE history_tables (
    table_name     text        PRIMARY KEY,
    -- Width of a row in seconds; NULL for `window_prices`, whose width is stored_shape's window_secs.
    width_secs     integer,
    -- Each partition spans this many seconds, aligned to the Unix epoch (a multiple of a day).
    partition_secs bigint      NOT NULL CHECK (partition_secs > 0 AND partition_secs % 86400 = 0),
    -- Retention has dropped every partition ending at or before this instant (NULL: none yet).
    dropped_before timestamptz
);

-- Spans: a day of windows, a week of minutes, four weeks of 5 minutes, 52 weeks of hours, 520 weeks
-- of days. Each keeps a partition's rows in the millions at thousands of tickers, and the number of
-- partitions a query over the default retention plans for in the tens.
INSERT INTO history_tables (table_name, width_secs, partition_secs) VALUES
    ('window_prices', NULL, 86400),
    ('bars_1m', 60, 7 * 86400),
    ('bars_5m', 300, 28 * 86400),
    ('bars_1h', 3600, 364 * 86400),
    ('bars_1d', 86400, 3640 * 86400);

-- Creates the missing partitions of `parent` covering [first, last]; returns how many it created.
-- Concurrent callers (several aggregators, a commit and the housekeeping) serialize on an advisory
-- lock and re-check under it, so each partition is created once. Names: <parent>_p<YYYYMMDD of start>.
CREATE FUNCTION tickpipe_ensure_partitions(parent text, first timestamptz, last timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    span     bigint;
    start_s  bigint;
    name     text;
    created  integer := 0;
BEGIN
    SELECT partition_secs INTO STRICT span FROM history_tables WHERE table_name = parent;
    start_s := floor(extract(epoch FROM first) / span)::bigint * span;
    WHILE start_s <= extract(epoch FROM last) LOOP
        name := parent || '_p' || to_char(to_timestamp(start_s) AT TIME ZONE 'UTC', 'YYYYMMDD');
        IF NOT EXISTS (SELECT FROM pg_class WHERE relname = name AND relnamespace = 'public'::regnamespace) THEN
            -- "partitions" in ASCII: one lock for every table's partition DDL.
            PERFORM pg_advisory_xact_lock(7021802312461504883);
            IF NOT EXISTS (SELECT FROM pg_class WHERE relname = name AND relnamespace = 'public'::regnamespace) THEN
                EXECUTE format('CREATE TABLE IF NOT EXISTS public.%I PARTITION OF public.%I FOR VALUES FROM (%L) TO (%L)',
                               name, parent, to_timestamp(start_s), to_timestamp(start_s + span));
                created := created + 1;
            END IF;
        END IF;
        start_s := start_s + span;
    END LOOP;
    RETURN created;
END
$$;

-- Drops the partitions of `parent` that end at or before `horizon` (whole partitions, never a DELETE
-- scan) and records how far history is gone; returns how many it dropped. The windows' table also
-- forgets the latest window of a ticker whose window it dropped.
CREATE FUNCTION tickpipe_drop_partitions(parent text, horizon timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    span     bigint;
    part     record;
    ends     timestamptz;
    dropped  integer := 0;
    reach    timestamptz;
BEGIN
    SELECT partition_secs INTO STRICT span FROM history_tables WHERE table_name = parent;
    PERFORM pg_advisory_xact_lock(7021802312461504883);
    FOR part IN
        SELECT c.relname,
               (to_date(substring(c.relname FROM '_p(\d{8})$'), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC')
                   + span * INTERVAL '1 second' AS ends_at
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = ('public.' || quote_ident(parent))::regclass
        ORDER BY 2
    LOOP
        ends := part.ends_at;
        EXIT WHEN ends > horizon;
        EXECUTE format('DROP TABLE public.%I', part.relname);
        dropped := dropped + 1;
        reach := ends;
    END LOOP;
    IF reach IS NOT NULL THEN
        UPDATE history_tables SET dropped_before = GREATEST(dropped_before, reach) WHERE table_name = parent;
        IF parent = 'window_prices' THEN
            DELETE FROM latest_windows WHERE window_start < reach;
        END IF;
    END IF;
    RETURN dropped;
END
$$;

-- The partitioned tables: today's windows under a new parent, and the rollups with the same columns.
ALTER TABLE window_prices RENAME TO window_prices_unpartitioned;
ALTER INDEX window_prices_pkey RENAME TO window_prices_unpartitioned_pkey;
ALTER INDEX window_prices_by_start RENAME TO window_prices_unpartitioned_by_start;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['window_prices', 'bars_1m', 'bars_5m', 'bars_1h', 'bars_1d'] LOOP
        EXECUTE format($f$
            CREATE TABLE %1$I (
                ticker        text        NOT NULL,
                window_start  timestamptz NOT NULL,
                window_end    timestamptz NOT NULL,
                price_sum     bigint      NOT NULL,
                sample_count  bigint      NOT NULL CHECK (sample_count > 0),
                min_price     bigint      NOT NULL,
                max_price     bigint      NOT NULL,
                average_price double precision GENERATED ALWAYS AS (price_sum::double precision / sample_count) STORED,
                updated_at    timestamptz NOT NULL DEFAULT now(),
                open_key      bigint[],
                open_price    bigint,
                close_key     bigint[],
                close_price   bigint,
                PRIMARY KEY (ticker, window_start),
                CHECK (window_end > window_start),
                CHECK (min_price <= max_price)
            ) PARTITION BY RANGE (window_start)$f$, t);
        -- Range queries across all tickers: WHERE window_start in [a, b) ORDER BY window_start, ticker.
        EXECUTE format('CREATE INDEX %I ON %I (window_start, ticker)', t || '_by_start', t);
        EXECUTE format('GRANT SELECT ON %I TO tickpipe_reader', t);
    END LOOP;
END
$$;

GRANT SELECT ON history_tables TO tickpipe_reader;

-- Folds `window_prices` into the rollup `target` over the windows starting in [first, last]: what
-- the aggregator's commits keep incrementally, computed at once. The open (close) is known only when
-- every window's is (windows written before open and close were recorded have NULL keys), as the
-- upsert keeps a NULL key. Used by this upgrade, and by tests that compare the two.
CREATE FUNCTION tickpipe_fold_windows(target text, first timestamptz, last timestamptz)
RETURNS TABLE (ticker text, window_start timestamptz, window_end timestamptz, price_sum bigint,
               sample_count bigint, min_price bigint, max_price bigint, open_key bigint[],
               open_price bigint, close_key bigint[], close_price bigint)
LANGUAGE sql STABLE AS $$
    SELECT w.ticker, b.bar_start, b.bar_start + h.width_secs * INTERVAL '1 second',
           sum(w.price_sum)::bigint, sum(w.sample_count)::bigint, min(w.min_price), max(w.max_price),
           CASE WHEN count(w.open_key) = count(*) THEN min(w.open_key) END,
           CASE WHEN count(w.open_key) = count(*) THEN (array_agg(w.open_price ORDER BY w.open_key))[1] END,
           CASE WHEN count(w.close_key) = count(*) THEN max(w.close_key) END,
           CASE WHEN count(w.close_key) = count(*) THEN (array_agg(w.close_price ORDER BY w.close_key DESC))[1] END
    FROM history_tables h
    JOIN window_prices w ON w.window_start >= first AND w.window_start <= last
    CROSS JOIN LATERAL (SELECT date_bin(h.width_secs * INTERVAL '1 second', w.window_start, TIMESTAMPTZ 'epoch') AS bar_start) b
    WHERE h.table_name = target
    GROUP BY w.ticker, b.bar_start, h.width_secs
$$;

-- The upgrade: copy the windows, then fold every rollup wider than (and a multiple of) their width.
DO $$
DECLARE
    first  timestamptz;
    last   timestamptz;
    window_secs integer;
    r      record;
BEGIN
    SELECT min(u.window_start), max(u.window_start) INTO first, last FROM window_prices_unpartitioned u;
    IF first IS NULL THEN
        RETURN;
    END IF;
    PERFORM tickpipe_ensure_partitions('window_prices', first, last);
    INSERT INTO window_prices (ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                               updated_at, open_key, open_price, close_key, close_price)
    SELECT ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
           updated_at, open_key, open_price, close_key, close_price
    FROM window_prices_unpartitioned;
    SELECT value::integer INTO window_secs FROM stored_shape WHERE name = 'window_secs';
    IF window_secs IS NULL THEN
        SELECT extract(epoch FROM u.window_end - u.window_start)::integer INTO window_secs
        FROM window_prices_unpartitioned u LIMIT 1;
    END IF;
    FOR r IN SELECT table_name FROM history_tables
             WHERE width_secs > window_secs AND width_secs % window_secs = 0 LOOP
        PERFORM tickpipe_ensure_partitions(r.table_name, first, last);
        EXECUTE format('INSERT INTO %I (ticker, window_start, window_end, price_sum, sample_count, min_price,
                                        max_price, open_key, open_price, close_key, close_price)
                        SELECT * FROM tickpipe_fold_windows(%L, %L, %L)', r.table_name, r.table_name, first, last);
    END LOOP;
END
$$;

DROP TABLE window_prices_unpartitioned;
