-- Every committed change of a window row, in commit order: what the API's live stream sends and its
-- in-memory latest prices follow. The aggregator appends to it in the same transaction as the change
-- and signals `NOTIFY window_changes` (delivered only on commit).
--
-- Ids are taken from the sequence under a transaction-level advisory lock held until commit, so
-- they become visible in id order even when several aggregator instances commit concurrently: a
-- reader that has seen id N will never later see a new id below N. Resuming "after id N" is exact.
CREATE TABLE window_changes (
    id              bigint      PRIMARY KEY,
    committed_at    timestamptz NOT NULL DEFAULT now(),
    -- A price change: the (ticker, window) row as it stands after this commit. NULL ticker: a
    -- watermark change only (complete_before advanced, no row changed).
    ticker          text,
    window_start    timestamptz,
    window_end      timestamptz,
    price_sum       bigint,
    sample_count    bigint,
    min_price       bigint,
    max_price       bigint,
    open_price      bigint,
    close_price     bigint,
    -- As of this commit, every window starting before this instant is final on every partition.
    complete_before timestamptz
);

CREATE SEQUENCE window_changes_id AS bigint OWNED BY window_changes.id;

GRANT SELECT ON window_changes TO tickpipe_reader;
