-- The API marks an entry `complete` once every partition's stored boundary (closed_before_ms: every
-- window starting before it is written for that partition) has passed the entry's end. The read-only
-- role may read those boundaries, and nothing else of the aggregator's progress.
GRANT SELECT (topic, kafka_partition, closed_before_ms) ON aggregator_progress TO tickpipe_reader;
