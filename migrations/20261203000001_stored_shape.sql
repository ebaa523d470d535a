-- What shapes the stored rows, recorded by the first writer: today the window width. A window row does
-- not carry its width in its key, so data written at one width and extended or read at another would
-- be wrong without a word (rows of two widths side by side, prices skipped as already written). The
-- aggregator records its width here on its first start and refuses to start with another one; the
-- API reads it from here.
CREATE TABLE stored_shape (
    name        text        PRIMARY KEY,
    value       text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- A database written before this table existed: its rows say their width.
INSERT INTO stored_shape (name, value)
SELECT 'window_secs', (extract(epoch FROM window_end - window_start))::bigint::text
FROM window_prices
LIMIT 1;

GRANT SELECT ON stored_shape TO tickpipe_reader;
