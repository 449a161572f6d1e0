//! `connect`: a pool from a connection string, checked by opening one connection.

use pgratchet_harness::test_db;
use pgratchet_runtime::{connect, Error};

use crate::support::*;

#[tokio::test]
async fn connect_opens_a_pool_the_runner_uses() {
    let db = test_db("connect").await;
    let pool = connect(&db.url, 2).await.expect("a pool");
    assert_eq!(
        pool.status().size,
        1,
        "one connection opened to check the string"
    );
    let migrations = set(&[(1, "create_a", "CREATE TABLE a (id int);")]);
    let report = migrations.run(&pool).await.expect("run on it");
    assert_eq!(applied(&report), vec![1]);
    assert_eq!(history(&db.client().await).await, vec![1]);
}

#[tokio::test]
async fn connect_fails_early_and_refuses_what_it_cannot_do() {
    let db = test_db("connect_refusals").await;
    let missing = db.url.replace(&db.name, &format!("missing_{}", db.name));
    let error = connect(&missing, 1).await.expect_err("no such database");
    assert!(matches!(error, Error::Pool(_)), "{error:?}");
    assert_eq!(
        error.code().map(tokio_postgres::error::SqlState::code),
        Some("3D000"),
        "{error:?}"
    );

    let separator = if db.url.contains('?') { '&' } else { '?' };
    let tls = format!("{}{separator}sslmode=require", db.url);
    let error = connect(&tls, 1).await.expect_err("TLS required");
    assert!(matches!(error, Error::TlsRequired), "{error:?}");
    assert!(error.to_string().contains("TLS connector"), "{error}");

    let error = connect("postgres://localhost:notaport/x", 1)
        .await
        .expect_err("not a connection string");
    assert!(
        error
            .to_string()
            .contains("could not read the connection string"),
        "{error}"
    );
}
