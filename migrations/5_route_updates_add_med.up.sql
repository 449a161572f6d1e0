-- Path attributes added later: MULTI_EXIT_DISC and LOCAL_PREF (NULL when the update had none,
-- and for rows stored before this migration). Nullable, no default and no constraint, so that
-- it is instant, also on a compressed TimescaleDB hypertable.

ALTER TABLE route_updates
    ADD COLUMN med BIGINT,
    ADD COLUMN local_pref BIGINT;
