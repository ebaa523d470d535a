-- Offsets (at or after resume_offset) the aggregator rejected as stamped too far in the future.
-- That check reads the wall clock, so a replay could judge the same record differently; it takes
-- the verdict stored here instead (see aggregator/src/partition.rs). Usually empty.
ALTER TABLE aggregator_progress
    ADD COLUMN future_offsets bigint[] NOT NULL DEFAULT '{}';
