-- A plain DROP INDEX (brief ACCESS EXCLUSIVE lock) rather than CONCURRENTLY: by the time this runs
-- route_updates may be a TimescaleDB hypertable (migration 4), which refuses CONCURRENTLY.
DROP INDEX IF EXISTS route_updates_prefix_idx;
