//! Nothing: the cases are in `driver/main.rs`. This library exists so that trybuild passes the
//! package's features (`lint`) on to the crates it builds.
