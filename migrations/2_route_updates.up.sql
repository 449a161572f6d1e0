-- One row per prefix announced or withdrawn by a peer, as the router reported it (BMP Route
-- Monitoring). Time-series: no primary key; a unique key would have to include `time` for
-- TimescaleDB's create_hypertable (migration 4), and updates have no natural one.

CREATE TABLE route_updates (
    time           TIMESTAMPTZ NOT NULL,
    router_address INET NOT NULL,
    peer_address   INET NOT NULL,
    peer_as        BIGINT NOT NULL CHECK (peer_as BETWEEN 0 AND 4294967295),
    family         TEXT NOT NULL CHECK (family IN ('ipv4', 'ipv6')),
    prefix         CIDR NOT NULL,
    next_hop       INET,
    as_path        BIGINT[] NOT NULL DEFAULT '{}',
    communities    TEXT[] NOT NULL DEFAULT '{}',
    origin_as      BIGINT,
    is_withdrawn   BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT route_updates_family_matches_prefix
        CHECK (family = CASE family(prefix) WHEN 4 THEN 'ipv4' ELSE 'ipv6' END)
);

CREATE INDEX route_updates_time_idx ON route_updates (time DESC);
CREATE INDEX route_updates_peer_time_idx ON route_updates (peer_address, time DESC);
CREATE INDEX route_updates_origin_as_time_idx ON route_updates (origin_as, time DESC)
    WHERE origin_as IS NOT NULL;
