//! (e) The test kits on the generated set: 32 tests with `#[pgratchet_test::test]` and 32 with
//! `#[sqlx::test]`, each recording when its body starts (nanoseconds since the epoch, in
//! `$KITS_BENCH_OUT/<kit>-<test>`) and making one query. `test_kits.py` runs them and makes the
//! table; without `KITS_BENCH_OUT` they are plain tests.

use std::time::{SystemTime, UNIX_EPOCH};

static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("migrations/pgratchet");

fn mark(kit: &str, test: &str) {
    if let Some(dir) = std::env::var_os("KITS_BENCH_OUT") {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{kit}-{test}")),
            now.to_string(),
        )
        .expect("write the mark");
    }
}

macro_rules! tests {
    ($($name:ident),*) => {
        mod pgratchet_kit {
            $(
                #[pgratchet_test::test(migrations = super::MIGRATIONS)]
                async fn $name(pool: pgratchet::deadpool_postgres::Pool) {
                    super::mark("pgratchet", stringify!($name));
                    let client = pool.get().await.expect("a connection");
                    let row = client
                        .query_one("SELECT count(*) FROM schema_migrations", &[])
                        .await
                        .expect("the history");
                    assert!(row.get::<_, i64>(0) > 0);
                }
            )*
        }
        mod sqlx_kit {
            $(
                #[sqlx::test(migrations = "migrations/sqlx")]
                async fn $name(pool: sqlx::PgPool) {
                    super::mark("sqlx", stringify!($name));
                    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
                        .fetch_one(&pool)
                        .await
                        .expect("the history");
                    assert!(count > 0);
                }
            )*
        }
    };
}

tests!(
    t00, t01, t02, t03, t04, t05, t06, t07, t08, t09, t10, t11, t12, t13, t14, t15, t16, t17, t18,
    t19, t20, t21, t22, t23, t24, t25, t26, t27, t28, t29, t30, t31
);
