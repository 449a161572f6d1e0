//! The child process of pgratchet-test's own tests of what outlives a test: it makes one test
//! database and then passes, fails or hangs, so that the test can see what is left afterwards.
//!
//! `probe pass | drop | fail | hang [SQL]`: migration 1 creates table `t`; migration 2 is `SQL`
//! (default: an index on it). Prints `PROBE db=<name> template=<template> url=<url> pid=<its pid>`.

use pgratchet_runtime::{Migration, Migrations, Script};
use pgratchet_test::TestDatabase;

fn main() {
    let mut args = std::env::args().skip(1);
    let action = args.next().unwrap_or_default();
    let second = args
        .next()
        .unwrap_or_else(|| "CREATE INDEX t_note ON t (note);".to_owned());
    let second = if action == "hang" {
        "SELECT pg_sleep(600);".to_owned()
    } else {
        second
    };
    let migrations = Migrations::new(vec![
        Migration::new(
            1,
            "t",
            Script::new(
                "1_t.sql",
                "CREATE TABLE t (id int PRIMARY KEY, note text);",
                false,
            ),
            None,
        ),
        Migration::new(
            2,
            "second",
            Script::new("2_second.sql", second, false),
            None,
        ),
    ])
    .expect("a valid set");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if action == "hang" {
        println!("PROBE hanging");
    }
    let db = match runtime.block_on(TestDatabase::new(&migrations)) {
        Ok(db) => db,
        Err(error) => {
            eprintln!("PROBE error: {error}");
            std::process::exit(3);
        }
    };
    println!(
        "PROBE db={} template={} url={} pid={}",
        db.name(),
        db.template(),
        db.url(),
        std::process::id()
    );
    match action.as_str() {
        "pass" => runtime.block_on(db.close()).expect("the database drops"),
        "drop" => drop(db),
        "fail" => panic!("the probe's test failed"),
        other => panic!("usage: probe pass | drop | fail | hang [SQL] (got {other:?})"),
    }
}
