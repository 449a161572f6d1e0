-- migrate:no-transaction
-- Longest-prefix and covering lookups (`prefix >>= '192.0.2.7'`, `prefix <<= '10.0.0.0/8'`) on a
-- table that is written all the time: built without blocking writes, so outside a transaction.
-- Runs before route_updates becomes a hypertable (4): TimescaleDB refuses CONCURRENTLY there.
-- An interrupted CONCURRENTLY build leaves an INVALID index behind; dropping it first makes a
-- rerun (after `pgratchet repair`) build a valid one instead of keeping the broken one.

DROP INDEX CONCURRENTLY IF EXISTS route_updates_prefix_idx;
CREATE INDEX CONCURRENTLY route_updates_prefix_idx ON route_updates USING gist (prefix inet_ops);
