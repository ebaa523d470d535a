-- Aggregated prices: one row per (ticker, 30-second window), written by the aggregator.
--
-- Sums and counts are stored, not averages, so that the contributions of different Kafka partitions
-- to the same (ticker, window) merge by addition and the average stays exact (sum / count).
CREATE TABLE window_prices (
    ticker        text        NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    price_sum     bigint      NOT NULL,
    sample_count  bigint      NOT NULL CHECK (sample_count > 0),
    min_price     bigint      NOT NULL,
    max_price     bigint      NOT NULL,
    average_price double precision GENERATED ALWAYS AS (price_sum::double precision / sample_count) STORED,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, window_start),
    CHECK (window_end > window_start),
    CHECK (min_price <= max_price)
);

-- Range queries across all tickers: WHERE window_start in [a, b) ORDER BY window_start, ticker.
CREATE INDEX window_prices_by_start ON window_prices (window_start, ticker);

-- The latest written window of each ticker, kept by the aggregator in the same transaction as the
-- rows, so "latest price of every ticker" is one index seek per ticker however large the table grows.
CREATE TABLE latest_windows (
    ticker       text        PRIMARY KEY,
    window_start timestamptz NOT NULL
);

-- The aggregator's progress per Kafka partition: the truth about what has been written. It is
-- updated in the same transaction as the window rows it accounts for (see README, "Exactly once").
CREATE TABLE aggregator_progress (
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    -- Offset to resume from: the lowest offset still inside a window not yet written (-1: beginning).
    resume_offset    bigint      NOT NULL,
    -- Offset after the last record accounted for; records below it are replays after a restart.
    next_offset      bigint      NOT NULL,
    -- Event-time watermark in Unix milliseconds.
    watermark_ms     bigint      NOT NULL,
    -- Every window starting before this instant (Unix ms) has been written for this partition.
    closed_before_ms bigint      NOT NULL,
    -- Invalid records below this offset have been delivered to the dead-letter topic.
    dlq_next_offset  bigint      NOT NULL,
    -- Bumped by every instance that takes the partition; writes carry it, fencing off a former owner.
    owner_epoch      bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition)
);
