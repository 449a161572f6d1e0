-- The BMP speakers (routers) that stream to the collector, and the BGP peers each one reports.

CREATE TABLE routers (
    router_address INET PRIMARY KEY,
    name           TEXT,
    sys_descr      TEXT,
    first_seen     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE bmp_peers (
    router_address   INET NOT NULL REFERENCES routers (router_address) ON DELETE CASCADE,
    peer_address     INET NOT NULL,
    peer_as          BIGINT NOT NULL CHECK (peer_as BETWEEN 0 AND 4294967295),
    bgp_id           INET,
    state            TEXT NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'down')),
    state_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    first_seen       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (router_address, peer_address)
);

CREATE INDEX bmp_peers_peer_address_idx ON bmp_peers (peer_address);
