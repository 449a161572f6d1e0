//! [`connect`]: a pool for a connection string, for a service that has none yet.

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;

use crate::{BoxFuture, Error};

/// A deadpool-postgres pool of at most `max_size` connections for a libpq connection string (a
/// `postgres://` URL or `key=value` pairs), with one connection opened and put back, so that a
/// wrong address or password fails here rather than at the first query.
///
/// It is compiled in this crate, like [`Migrations::run`](crate::Migrations::run): a service
/// that builds its pool this way does not compile tokio-postgres's connect and deadpool's pool
/// into its own crate, the one rebuilt whenever a migration file changes.
///
/// It makes plain connections only: `sslmode=prefer` (the default) connects without TLS, and a
/// string that requires TLS is refused with [`Error::TlsRequired`]. For TLS, build the pool
/// with your connector and pass it to [`Migrations::run`](crate::Migrations::run).
///
/// ```no_run
/// # async fn example(migrations: &pgratchet_runtime::Migrations) -> Result<(), pgratchet_runtime::Error> {
/// let pool = pgratchet_runtime::connect("postgres://app@localhost/app", 8).await?;
/// migrations.run(&pool).await?;
/// # Ok(())
/// # }
/// ```
pub fn connect(url: &str, max_size: usize) -> BoxFuture<'_, Result<Pool, Error>> {
    Box::pin(async move {
        if max_size == 0 {
            return Err(Error::InvalidSetting {
                name: "max_size",
                value: max_size.to_string(),
                reason: "a pool of no connections never hands one out",
            });
        }
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| Error::db("could not read the connection string", error))?;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(Error::TlsRequired);
        }
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .build()
            // Building fails only for timeouts without a runtime, and one is given.
            .map_err(|_| Error::Pool(PoolError::NoRuntimeSpecified))?;
        drop(pool.get().await.map_err(Error::Pool)?);
        Ok(pool)
    })
}
