-- Undoes the compression (policy, compressed chunks, setting). A hypertable cannot be turned back
-- into a plain table in place: route_updates stays one until migration 2's down drops it.
-- A no-op on plain PostgreSQL.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    EXECUTE $sql$
        SELECT remove_compression_policy('route_updates', if_exists => true)
    $sql$;
    EXECUTE $sql$
        SELECT decompress_chunk(chunk, if_compressed => true) FROM show_chunks('route_updates') AS chunk
    $sql$;
    EXECUTE $sql$
        ALTER TABLE route_updates SET (timescaledb.compress = false)
    $sql$;
END
$$;
