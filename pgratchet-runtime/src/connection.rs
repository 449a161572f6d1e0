//! The runner's connection: one that no other code shares while it may hold session state.

use std::ops::Deref;

use tokio_postgres::Client;

/// A pooled connection used read-only (returned to the pool), one taken out of the pool for good,
/// or a client the caller handed over. Dropping a taken or owned one closes it, which releases a
/// session lock, ends an aborted transaction and forgets any `SET`, however the run ended (error,
/// panic or a cancelled future).
pub(crate) enum Connection {
    Pooled(deadpool_postgres::Object),
    Taken(deadpool_postgres::ClientWrapper),
    Owned(Client),
}

impl Connection {
    /// Makes sure the connection never goes back to a pool.
    pub(crate) fn take(self) -> Connection {
        match self {
            Connection::Pooled(object) => {
                Connection::Taken(deadpool_postgres::Object::take(object))
            }
            other => other,
        }
    }
}

impl Deref for Connection {
    type Target = Client;

    fn deref(&self) -> &Client {
        match self {
            Connection::Pooled(object) => object,
            Connection::Taken(wrapper) => wrapper,
            Connection::Owned(client) => client,
        }
    }
}
