//! Storing route updates in batches: one transaction per batch that registers the routers and
//! peers seen and copies the updates into `route_updates` (`COPY ... FROM STDIN`, binary).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::pin::pin;

use deadpool_postgres::{Pool, PoolError};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::feed::RouteUpdate;

/// How many updates go into one transaction.
pub(crate) const BATCH_SIZE: usize = 100;

const COPY_ROUTE_UPDATES: &str = "COPY route_updates (time, router_address, peer_address, \
     peer_as, family, prefix, next_hop, as_path, communities, origin_as, is_withdrawn, med, \
     local_pref) FROM STDIN (FORMAT binary)";
const COLUMN_TYPES: [Type; 13] = [
    Type::TIMESTAMPTZ,
    Type::INET,
    Type::INET,
    Type::INT8,
    Type::TEXT,
    Type::CIDR,
    Type::INET,
    Type::INT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT8,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
];

/// Rows go in by router, then peer, in a fixed order, so that concurrent batches lock them in
/// one order and never deadlock.
const UPSERT_ROUTERS: &str = "INSERT INTO routers (router_address) \
     SELECT * FROM unnest($1::inet[]) \
     ON CONFLICT (router_address) DO UPDATE SET last_seen = now()";
const UPSERT_PEERS: &str = "INSERT INTO bmp_peers (router_address, peer_address, peer_as) \
     SELECT * FROM unnest($1::inet[], $2::inet[], $3::int8[]) \
     ON CONFLICT (router_address, peer_address) DO UPDATE SET \
         peer_as = EXCLUDED.peer_as, \
         state_changed_at = CASE WHEN bmp_peers.state = 'up' THEN bmp_peers.state_changed_at ELSE now() END, \
         state = 'up', \
         last_seen = now()";

/// Why a batch was not stored.
#[derive(Debug)]
pub(crate) enum StoreError {
    Pool(PoolError),
    Postgres(tokio_postgres::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Pool(e) => write!(f, "no database connection: {e}"),
            StoreError::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.severity(), db.message()),
                None => write!(f, "{e}"),
            },
        }
    }
}

impl std::error::Error for StoreError {}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        StoreError::Pool(e)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
}

/// Stores `batch` in one transaction: all of it or none. Returns the number of rows stored.
pub(crate) async fn store(pool: &Pool, batch: &[RouteUpdate]) -> Result<u64, StoreError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;

    let peers: BTreeMap<(IpAddr, IpAddr), i64> = batch
        .iter()
        .map(|u| ((u.router, u.peer_address), i64::from(u.peer_as)))
        .collect();
    let routers: BTreeSet<IpAddr> = peers.keys().map(|&(router, _)| router).collect();
    let routers: Vec<IpAddr> = routers.into_iter().collect();
    transaction.execute(UPSERT_ROUTERS, &[&routers]).await?;
    let (peer_routers, peer_addresses): (Vec<IpAddr>, Vec<IpAddr>) = peers.keys().copied().unzip();
    let peer_ases: Vec<i64> = peers.values().copied().collect();
    transaction
        .execute(UPSERT_PEERS, &[&peer_routers, &peer_addresses, &peer_ases])
        .await?;

    let sink = transaction.copy_in(COPY_ROUTE_UPDATES).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &COLUMN_TYPES));
    for update in batch {
        let as_path: Vec<i64> = update.as_path.iter().map(|&asn| i64::from(asn)).collect();
        let row: [&(dyn ToSql + Sync); 13] = [
            &update.time,
            &update.router,
            &update.peer_address,
            &i64::from(update.peer_as),
            &update.family(),
            &update.prefix,
            &update.next_hop,
            &as_path,
            &update.communities,
            &update.origin_as().map(i64::from),
            &update.withdrawn,
            &update.med.map(i64::from),
            &update.local_pref.map(i64::from),
        ];
        writer.as_mut().write(&row).await?;
    }
    let rows = writer.finish().await?;
    transaction.commit().await?;
    Ok(rows)
}

/// Stores `updates` in batches of [`BATCH_SIZE`]; stops at the first batch that fails.
pub(crate) async fn store_all(pool: &Pool, updates: &[RouteUpdate]) -> Result<u64, StoreError> {
    let mut stored = 0;
    for batch in updates.chunks(BATCH_SIZE) {
        stored += store(pool, batch).await?;
    }
    Ok(stored)
}
