-- With TimescaleDB installed (CREATE EXTENSION timescaledb, by the DBA), route_updates becomes a
-- hypertable of daily chunks, compressed per peer after a week. Plain PostgreSQL has no such
-- extension: then this is a no-op, and the TimescaleDB calls go through EXECUTE so that it never
-- even parses them.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RAISE NOTICE 'timescaledb is not installed: route_updates stays a plain table';
        RETURN;
    END IF;
    EXECUTE $sql$
        SELECT create_hypertable('route_updates', 'time',
            chunk_time_interval => INTERVAL '1 day',
            create_default_indexes => false,
            migrate_data => true,
            if_not_exists => true)
    $sql$;
    EXECUTE $sql$
        ALTER TABLE route_updates SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'peer_address',
            timescaledb.compress_orderby = 'time DESC')
    $sql$;
    EXECUTE $sql$
        SELECT add_compression_policy('route_updates', INTERVAL '7 days', if_not_exists => true)
    $sql$;
END
$$;
