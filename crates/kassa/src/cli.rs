//! The command line (docs/reference/cli.md). Flags become the top [`ConfigLayer`]; everything else about
//! configuration lives in `kassa_server::config`.
//!
//! Values that may hold secrets (`--database-url`) are taken as plain strings and parsed by us, so
//! a parse error never echoes them (clap's own errors quote the rejected value).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kassa_server::{ConfigLayer, DatabaseUrl, LogFormat};

/// Kassa, an open-source POS payment platform.
#[derive(Debug, Parser)]
#[command(name = "kassa", version, about)]
pub struct Cli {
    /// Log line format on stderr: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process, with the channel simulators and demo data.
    Up(UpArgs),
    /// Production host: no simulators or demo data unless the config says so.
    Serve(ServeArgs),
    /// The channel simulators alone (card issuer, wallets), for running them as separate processes.
    Sim(SimArgs),
    /// Apply pending database migrations.
    Migrate(StoreArgs),
    /// Write a verified copy of the whole platform's data to FILE.
    Backup(FileArgs),
    /// Replace the platform's data with the backup in FILE.
    Restore(FileArgs),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Load generator: simulated bench terminals doing PIN+MAC card sales over ISO 8583.
    Bench(BenchArgs),
    /// The POS terminal program (--headless: line commands on stdin, JSON lines on stdout).
    Terminal(TerminalArgs),
    /// Reconcile a channel's statement for a business day against Kassa's records.
    Recon(ReconArgs),
    /// Settle every merchant for a business day once (T+1, or D0 while it is open).
    Payouts(PayoutsArgs),
}

/// `kassa payouts`.
#[derive(Debug, Args)]
pub struct PayoutsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The business day, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: String,
    /// Print the payouts as one JSON object (last on stdout).
    #[arg(long)]
    pub json: bool,
}

/// `kassa recon`.
#[derive(Debug, Args)]
pub struct ReconArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The channel: alipay, wechat or card.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: String,
    /// The business day, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: String,
    /// Read the statement from FILE instead of downloading it through the channel's connector.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print the run as one JSON object (last on stdout).
    #[arg(long)]
    pub json: bool,
}

/// Where the configuration and the data are.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// TOML configuration file (keys as in `Config`: http, iso, sim, data_dir, database_url, …).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./kassa-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL, sqlite://… or postgres://… [default: SQLite, kassa.db in the data directory].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Listen addresses, and where the card issuer is.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// HTTP address (API, back office, health, metrics) [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// ISO 8583 address (terminals) [default: 127.0.0.1:8583].
    #[arg(long, value_name = "ADDR")]
    pub iso: Option<SocketAddr>,
    /// Channel simulators' address [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    pub sim: Option<SocketAddr>,
    /// Card issuer over the issuer link, e.g. http://127.0.0.1:8081 (`kassa sim`) [default: in-process simulator].
    #[arg(long, value_name = "URL")]
    pub issuer_url: Option<String>,
    /// PEM certificate chain: HTTP is served as HTTPS only (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve ISO 8583 over TLS too, with the same certificate.
    #[arg(long)]
    pub iso_tls: bool,
}

/// `kassa sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Channel simulators' address [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    pub sim: Option<SocketAddr>,
    /// Data directory; the wallet simulator keeps its books and credentials in its `sim/`
    /// [default: ./kassa-data]. Give a simulator run beside a `kassa up` its own.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `kassa up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Do not seed demo data nor write the demo credentials file.
    #[arg(long)]
    pub no_demo: bool,
}

/// `kassa serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// `kassa backup FILE` / `kassa restore FILE`.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// The backup file.
    pub file: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `kassa bench` (docs/reference/cli.md, `kassa bench`).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The host's ISO 8583 address [default: 127.0.0.1:8583].
    #[arg(long, value_name = "ADDR", conflicts_with = "spawn")]
    pub iso: Option<SocketAddr>,
    /// The host's HTTP address, for /metrics [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", conflicts_with = "spawn")]
    pub http: Option<SocketAddr>,
    /// How many bench terminals (20000001 …) to drive at once, 1 … 256.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub tid_count: usize,
    /// How long to send sales, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub duration: u64,
    /// Print the result as one JSON object, the last line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Start a host (`kassa up` on a fresh temporary data directory) for the run, stop it after.
    #[arg(long)]
    pub spawn: bool,
    /// Database URL for the spawned host (a fresh, empty database) [default: SQLite in the data directory].
    #[arg(long, value_name = "URL", requires = "spawn")]
    pub database_url: Option<String>,
    /// Skip the raw group-commit and physical-limit phases that follow a spawned run.
    #[arg(long, requires = "spawn")]
    pub no_raw: bool,
    /// Demo credentials file with the terminals' TMKs [default: ./kassa-data/demo/credentials.json].
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// QR payments with customer codes through the terminal QR API (over --http) instead of card
    /// sales over ISO 8583.
    #[arg(long)]
    pub qr: bool,
    /// With --qr or --gateway: whose codes, alipay (RSA2 on both legs), wechat (HMAC) or both.
    #[arg(long, value_name = "WALLET", default_value = "alipay")]
    pub wallets: String,
    /// Customer-code payments (alipay.trade.pay) through the Alipay-compatible gateway
    /// (/gateway.do over --http) with the demo app's requests signed before the run; --tid-count
    /// cash registers send at once.
    #[arg(long, conflicts_with = "qr")]
    pub gateway: bool,
}

/// `kassa terminal` (docs/reference/terminal.md).
#[derive(Debug, Args)]
pub struct TerminalArgs {
    /// The terminal id (field 41), e.g. 10000001.
    #[arg(long, value_name = "TID")]
    pub tid: String,
    /// The host's ISO 8583 address [default: 127.0.0.1:8583].
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// The host's HTTP address or URL, for TMS and QR payments [default: http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    pub http: Option<String>,
    /// Credentials file with the terminal's TMK and TMS credential [default: ./kassa-data/demo/credentials.json].
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Where the terminal keeps its journal (default: `./kassa-data/terminals/<TID>`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Line commands on stdin, one JSON result per line on stdout.
    #[arg(long)]
    pub headless: bool,
    /// Receipt printer: a file, or tcp://HOST:PORT.
    #[arg(long, value_name = "PATH")]
    pub printer: Option<String>,
    /// Language of messages: en or zh [default: en].
    #[arg(long, value_name = "LANG")]
    pub lang: Option<String>,
}

/// `kassa audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit log's hash chain; exits non-zero naming the first broken record.
    Verify(StoreArgs),
}

impl StoreArgs {
    /// The flags as a configuration layer.
    pub fn layer(&self) -> anyhow::Result<ConfigLayer> {
        let database_url = self
            .database_url
            .as_deref()
            .map(DatabaseUrl::parse)
            .transpose()
            .context("invalid value for --database-url")?;
        Ok(ConfigLayer { data_dir: self.data_dir.clone(), database_url, ..ConfigLayer::default() })
    }
}

impl ListenArgs {
    /// Adds the listen flags to `layer`.
    pub fn add_to(&self, layer: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            http: self.http,
            iso: self.iso,
            sim: self.sim,
            issuer_url: self.issuer_url.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            // Absent means "ask the lower layers", so the TOML file or the environment can set it.
            iso_tls: self.iso_tls.then_some(true),
            ..layer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn up_takes_every_documented_flag() {
        let cli = Cli::try_parse_from([
            "kassa",
            "up",
            "--data-dir",
            "/tmp/d",
            "--database-url",
            "postgres://u:p@h/db",
            "--http",
            "127.0.0.1:1",
            "--iso",
            "127.0.0.1:2",
            "--sim",
            "127.0.0.1:3",
            "--issuer-url",
            "http://127.0.0.1:4",
            "--no-demo",
            "--log-format",
            "json",
            "--tls-cert",
            "/etc/kassa/cert.pem",
            "--tls-key",
            "/etc/kassa/key.pem",
            "--iso-tls",
        ])
        .unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        let Command::Up(up) = cli.command else { panic!("not up") };
        assert!(up.no_demo);
        let layer = up.listen.add_to(up.store.layer().unwrap());
        assert_eq!(layer.http, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(layer.sim, Some("127.0.0.1:3".parse().unwrap()));
        assert_eq!(layer.issuer_url.as_deref(), Some("http://127.0.0.1:4"));
        assert_eq!(layer.tls_cert, Some(PathBuf::from("/etc/kassa/cert.pem")));
        assert_eq!(layer.tls_key, Some(PathBuf::from("/etc/kassa/key.pem")));
        assert_eq!(layer.iso_tls, Some(true));
        let Command::Sim(sim) = Cli::try_parse_from(["kassa", "sim", "--sim", "127.0.0.1:5"]).unwrap().command else {
            panic!("not sim")
        };
        assert_eq!(sim.sim, Some("127.0.0.1:5".parse().unwrap()));
        assert_eq!(layer.data_dir, Some(PathBuf::from("/tmp/d")));
        assert_eq!(layer.database_url.unwrap().to_string(), "postgres://u:***@h/db");
    }

    #[test]
    fn tls_flags_come_in_pairs_on_serve_too() {
        assert!(Cli::try_parse_from(["kassa", "serve", "--tls-cert", "c.pem"]).is_err(), "--tls-key is required");
        let cli = Cli::try_parse_from(["kassa", "serve", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        let Command::Serve(serve) = cli.command else { panic!("not serve") };
        let layer = serve.listen.add_to(ConfigLayer::default());
        assert_eq!(layer.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(layer.iso_tls, None, "no --iso-tls leaves it to the file and environment");
    }

    #[test]
    fn a_bad_database_url_is_not_echoed() {
        let cli = Cli::try_parse_from(["kassa", "migrate", "--database-url", "mysql://u:hunter2@h/db"]).unwrap();
        let Command::Migrate(store) = cli.command else { panic!("not migrate") };
        let error = format!("{:#}", store.layer().unwrap_err());
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.starts_with("invalid value for --database-url"), "{error}");
    }

    #[test]
    fn terminal_takes_every_documented_flag() {
        let cli = Cli::try_parse_from([
            "kassa",
            "terminal",
            "--tid",
            "10000001",
            "--host",
            "127.0.0.1:8583",
            "--http",
            "http://127.0.0.1:8080",
            "--credentials",
            "c.json",
            "--data-dir",
            "d",
            "--headless",
            "--printer",
            "tcp://127.0.0.1:9100",
            "--lang",
            "zh",
        ])
        .unwrap();
        let Command::Terminal(args) = cli.command else { panic!("not terminal") };
        assert_eq!(args.tid, "10000001");
        assert!(args.headless);
        assert_eq!(args.data_dir, Some(PathBuf::from("d")));
        assert_eq!(args.lang.as_deref(), Some("zh"));
        assert!(Cli::try_parse_from(["kassa", "terminal"]).is_err(), "--tid is required");
    }

    #[test]
    fn backup_and_restore_take_a_file() {
        let cli = Cli::try_parse_from(["kassa", "backup", "out.db", "--data-dir", "d"]).unwrap();
        let Command::Backup(args) = cli.command else { panic!("not backup") };
        assert_eq!(args.file, PathBuf::from("out.db"));
        assert!(Cli::try_parse_from(["kassa", "restore"]).is_err(), "FILE is required");
    }
}
