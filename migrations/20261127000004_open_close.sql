-- Open and close of each (ticker, window): the price with the smallest and the largest key, a key being
-- (record timestamp ms, Kafka partition, offset). Keys are unique for a ticker (a message holds a ticker
-- at most once), so a merge of partitions' contributions keeps the smaller open key and the larger close
-- key whatever the order the partitions write in, in the same upsert as the sums.
-- Rows written before this migration keep NULL: their open and close are unknown, and stay unknown when
-- later contributions merge into them (a NULL key never compares smaller or larger).
ALTER TABLE window_prices
    ADD COLUMN open_key    bigint[],
    ADD COLUMN open_price  bigint,
    ADD COLUMN close_key   bigint[],
    ADD COLUMN close_price bigint;
