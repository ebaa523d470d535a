-- The partitions of each topic as the aggregator last saw them in Kafka's metadata, so that a
-- partition nobody has claimed yet holds the `complete` boundary back (see crates/store/src/boundary.rs).
--
-- kafka_topics.partitions_checked_ms: the metadata was last read after this instant (Unix ms, less the
-- allowed timestamp disorder, aligned down to a window start). A partition created after that read holds
-- records stamped after it only, so no window before it can be changed by a partition not known yet.
CREATE TABLE kafka_topics (
    topic                text   PRIMARY KEY,
    partitions_checked_ms bigint NOT NULL
);

-- known_since_ms: no record of this partition is stamped before this instant: the check before the one
-- that found it (it did not exist then), or 0 for the partitions found at a topic's first check (their
-- history is unknown). A first claim starts the partition's progress there.
CREATE TABLE kafka_partitions (
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    known_since_ms  bigint  NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);

GRANT SELECT ON kafka_topics, kafka_partitions TO tickpipe_reader;

-- The topic is part of the stored shape too: a database holds the windows of one topic.
INSERT INTO stored_shape (name, value)
SELECT 'topic', topic FROM aggregator_progress ORDER BY updated_at DESC LIMIT 1;
