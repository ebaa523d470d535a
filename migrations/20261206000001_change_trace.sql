-- The trace of the commit that wrote each change (issue 24): the W3C `traceparent` of the
-- aggregator's `aggregator.commit` span, so that the API's stream delivery of the change joins that
-- trace. NULL when the aggregator exports no traces (the default), and for changes logged before
-- this column existed. Nullable with no default, so adding it rewrites nothing.
ALTER TABLE window_changes ADD COLUMN trace_parent text;
