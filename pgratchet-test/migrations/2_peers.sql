CREATE TABLE peers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, router_id bigint NOT NULL REFERENCES routers (id), address inet NOT NULL);
