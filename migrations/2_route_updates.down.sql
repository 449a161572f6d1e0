DROP TABLE route_updates;
