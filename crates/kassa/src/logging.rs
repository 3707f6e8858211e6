//! The tracing subscriber: the one global of the process. Logs go to stderr so stdout stays for
//! what the user asked for (the URLs of `kassa up`).
//!
//! **Invariant**: database drivers and wire-level crates never log below `info` unless the
//! filter names them: at `debug`, tokio-postgres logs every statement's parameters (password
//! hashes, sealed keys, card data), so a plain `KASSA_LOG=debug` must not switch that on.

use std::io::IsTerminal;

use kassa_server::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Crates that log what passes through them (SQL parameters, protocol bytes, payloads) at
/// `debug`/`trace`: capped at `info` unless the filter names them (or a module of theirs).
const QUIET_TARGETS: [&str; 10] = [
    "tokio_postgres",
    "postgres_protocol",
    "deadpool",
    "deadpool_postgres",
    "rusqlite",
    "rustls",
    "tokio_rustls",
    "hyper",
    "hyper_util",
    "h2",
];

/// `filter` with `,<target>=<cap>` appended for each of [`QUIET_TARGETS`] it does not name; the
/// cap is `info`, or the filter's own level when that is quieter (`warn`, `error`, `off`). A
/// directive for a shorter prefix (`tokio=debug`, which also matches `tokio_postgres`) does
/// not count as naming the driver: the longer, capping directive wins.
fn with_quiet_drivers(filter: &str) -> String {
    let bare_level =
        filter.split(',').map(str::trim).rfind(|directive| !directive.contains('=')).map(str::to_ascii_lowercase);
    let cap = match bare_level.as_deref() {
        Some(quieter @ ("off" | "error" | "warn")) => quieter.to_owned(),
        Some(_) => "info".to_owned(),
        None => "error".to_owned(),
    };
    let named: Vec<&str> = filter
        .split(',')
        .filter_map(|directive| {
            let target = directive.trim().split(['=', '[']).next().unwrap_or_default().trim();
            // A bare level (`debug`) names no target.
            directive.contains('=').then_some(target)
        })
        .collect();
    let mut effective = filter.trim().to_owned();
    for quiet in QUIET_TARGETS {
        let is_named = named
            .iter()
            .any(|target| *target == quiet || target.strip_prefix(quiet).is_some_and(|rest| rest.starts_with("::")));
        if !is_named {
            if !effective.is_empty() {
                effective.push(',');
            }
            effective.push_str(quiet);
            effective.push('=');
            effective.push_str(&cap);
        }
    }
    effective
}

/// Installs the subscriber with the filter `config.log` (`KASSA_LOG`, default `info`), the
/// drivers kept at `info` unless it names them.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(with_quiet_drivers(&config.log))
        .map_err(|error| anyhow::anyhow!("invalid log filter {:?} (KASSA_LOG): {error}", config.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

/// [`init`] appending to `path` (mode 0600) instead of stderr: for a program that owns the
/// screen (the terminal's UI), where log lines would draw over it.
pub fn init_to_file(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(with_quiet_drivers(&config.log))
        .map_err(|error| anyhow::anyhow!("invalid log filter {:?} (KASSA_LOG): {error}", config.log))?;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file =
        options.open(path).map_err(|error| anyhow::anyhow!("cannot open the log file {}: {error}", path.display()))?;
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::sync::Mutex::new(file)).with_ansi(false);
    let installed = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Whether an event of `target` at `level` passes the filter `KASSA_LOG=filter` makes.
    fn passes(filter: &str, target: &str, level: Level) -> bool {
        let filter = EnvFilter::try_new(with_quiet_drivers(filter)).unwrap();
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || match (target, level) {
            ("tokio_postgres::query", Level::DEBUG) => {
                tracing::event_enabled!(target: "tokio_postgres::query", Level::DEBUG)
            }
            ("tokio_postgres::query", Level::INFO) => {
                tracing::event_enabled!(target: "tokio_postgres::query", Level::INFO)
            }
            ("kassa::host", Level::DEBUG) => tracing::event_enabled!(target: "kassa::host", Level::DEBUG),
            ("rustls::client", Level::TRACE) => tracing::event_enabled!(target: "rustls::client", Level::TRACE),
            other => panic!("no probe for {other:?}"),
        })
    }

    #[test]
    fn debug_everywhere_keeps_driver_parameters_out() {
        assert!(passes("debug", "kassa::host", Level::DEBUG), "our own debug logs are on");
        assert!(!passes("debug", "tokio_postgres::query", Level::DEBUG), "statement parameters stay out");
        assert!(passes("debug", "tokio_postgres::query", Level::INFO), "the driver's warnings still come");
        assert!(!passes("trace", "rustls::client", Level::TRACE));
        assert!(!passes("info,kassa=trace", "tokio_postgres::query", Level::DEBUG));
        assert!(!passes("debug,tokio=trace", "tokio_postgres::query", Level::DEBUG), "a shorter prefix is not a name");
    }

    #[test]
    fn a_driver_named_explicitly_logs_as_asked() {
        assert!(passes("info,tokio_postgres=debug", "tokio_postgres::query", Level::DEBUG));
        assert!(passes("tokio_postgres::query=debug", "tokio_postgres::query", Level::DEBUG));
        assert!(!passes("tokio_postgres_extra=debug", "tokio_postgres::query", Level::DEBUG), "a prefix is not a name");
    }

    #[test]
    fn the_effective_filter_reads_as_written_plus_the_caps() {
        assert_eq!(
            with_quiet_drivers("debug,tokio_postgres=trace"),
            "debug,tokio_postgres=trace,postgres_protocol=info,deadpool=info,deadpool_postgres=info,rusqlite=info,\
             rustls=info,tokio_rustls=info,hyper=info,hyper_util=info,h2=info"
        );
        assert!(with_quiet_drivers("warn").ends_with(",h2=warn"), "never louder than asked");
    }
}
