//! The tracing subscriber: the one global of the process. Logs go to stderr so stdout stays for
//! what the user asked for (the URLs of `kassa up`).

use std::io::IsTerminal;

use kassa_host::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the subscriber with the filter `config.log` (`KASSA_LOG`, default `info`).
pub fn init(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log)
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
