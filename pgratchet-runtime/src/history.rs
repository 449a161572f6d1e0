//! The history table and its audit log: their shape and creation, and every statement that reads
//! or writes them. No other module writes SQL about these tables.

mod create;
pub(crate) mod read;
pub(crate) mod shape;
pub(crate) mod write;

pub(crate) use create::ensure;

/// The host name recorded in the audit log.
pub(crate) fn host_name() -> &'static str {
    // Read once per process: every runner (and the fast path) asks for it.
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    })
}
