DROP TABLE bmp_peers;
DROP TABLE routers;
