ALTER TABLE route_updates
    DROP COLUMN local_pref,
    DROP COLUMN med;
