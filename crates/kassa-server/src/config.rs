//! The one `Config`: every setting of a Kassa process, loaded once at start-up and passed down.
//!
//! Layers, lowest first: built-in defaults, an optional TOML file (`--config`), `KASSA_*`
//! environment variables, command-line flags. Each layer is a [`ConfigLayer`] of optional values;
//! [`Config::resolve`] lays them over each other and fills the gaps with defaults. The database
//! default depends on the *resolved* data directory, so `--data-dir x` alone moves the database too.
//!
//! It lives in `kassa-server` rather than the binary because every server reads from it (the HTTP
//! app its address, the ISO gateway its address, settlement the cut-off); the binary only turns
//! flags into a layer.
//!
//! **Invariant**: no secret is printed by `Debug`: the database URL masks its password and the
//! master key is masked. The master key comes only from the environment or the key file, never from
//! the TOML file (config files get copied around; key files have mode 0600). The zone PIN key
//! likewise comes only from the environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use kassa_crypto::at_rest::MASTER_KEY_HEX_CHARS;
use kassa_crypto::{MasterKey, TdesKey};

/// Default data directory (relative to the working directory, like `cargo run -- up` expects).
pub const DEFAULT_DATA_DIR: &str = "./kassa-data";
/// Default HTTP listen address (API, back office, health, metrics).
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Default ISO 8583 listen address (terminals).
pub const DEFAULT_ISO: &str = "127.0.0.1:8583";
/// Default listen address of the channel simulators.
pub const DEFAULT_SIM: &str = "127.0.0.1:8081";
/// Default business time zone: business dates and settlement follow mainland China time.
pub const DEFAULT_BUSINESS_TIME_ZONE: &str = "Asia/Shanghai";
/// Default daily cut-off (business-day change) in the business time zone.
pub const DEFAULT_CUTOFF: CutOff = CutOff { hour: 23, minute: 0 };
/// Default `tracing` filter.
pub const DEFAULT_LOG: &str = "info";

/// Environment variable names, one place so documentation and code agree.
pub mod env {
    /// Database URL (`sqlite://…` or `postgres://…`).
    pub const DATABASE_URL: &str = "KASSA_DATABASE_URL";
    /// HTTP listen address.
    pub const HTTP: &str = "KASSA_HTTP";
    /// ISO 8583 listen address.
    pub const ISO: &str = "KASSA_ISO";
    /// Simulators' listen address.
    pub const SIM: &str = "KASSA_SIM";
    /// Data directory.
    pub const DATA_DIR: &str = "KASSA_DATA_DIR";
    /// Master key, 64 hex characters; takes the place of `<data-dir>/master.key`.
    pub const MASTER_KEY: &str = "KASSA_MASTER_KEY";
    /// `tracing` filter directives, e.g. `info,kassa_server=debug`.
    pub const LOG: &str = "KASSA_LOG";
    /// The card issuer to use over the issuer link, e.g. `http://127.0.0.1:8081` (`kassa sim`).
    pub const ISSUER_URL: &str = "KASSA_ISSUER_URL";
    /// Where one-time codes are mailed: `smtps://HOST[:PORT]`, `smtp+starttls://HOST[:PORT]` or
    /// `smtp://localhost[:PORT]` (a relay on this machine).
    pub const SMTP_URL: &str = "KASSA_SMTP_URL";
    /// The From address of that mail.
    pub const SMTP_FROM: &str = "KASSA_SMTP_FROM";
    /// The HTTP gateway one-time codes for phone contacts are sent through (SMS).
    pub const SMS_URL: &str = "KASSA_SMS_URL";
    /// That gateway's API key (environment only, never a file).
    pub const SMS_API_KEY: &str = "KASSA_SMS_API_KEY";
    /// The host's HTTP base URL as payers and wallets reach it, e.g. `https://pay.example.com`.
    pub const PUBLIC_URL: &str = "KASSA_PUBLIC_URL";
    /// The JSON file of the wallet providers' credentials (`kassa serve`).
    pub const WALLET_CREDENTIALS: &str = "KASSA_WALLET_CREDENTIALS";
    /// Where the gateway may send merchant notifications: hosts or `http(s)://` URL prefixes,
    /// separated by commas.
    pub const NOTIFY_URL_ALLOW: &str = "KASSA_NOTIFY_URL_ALLOW";
    /// ISO 8583 connections one address (IPv6: one /64) may hold at once.
    pub const ISO_CONNECTIONS_PER_ADDRESS_MAX: &str = "KASSA_ISO_CONNECTIONS_PER_ADDRESS_MAX";
    /// The zone PIN key shared with the card issuer, 32 hex characters (double-length 3DES).
    pub const ZONE_PIN_KEY: &str = "KASSA_ZONE_PIN_KEY";
    /// PEM certificate chain for the listeners' TLS (with [`TLS_KEY`]): HTTP becomes HTTPS.
    pub const TLS_CERT: &str = "KASSA_TLS_CERT";
    /// PEM private key of [`TLS_CERT`].
    pub const TLS_KEY: &str = "KASSA_TLS_KEY";
    /// `true`/`1`: the ISO 8583 listener speaks TLS too (needs [`TLS_CERT`] and [`TLS_KEY`]).
    pub const ISO_TLS: &str = "KASSA_ISO_TLS";
}

/// The resolved configuration. Fields are public and read-only by convention: it is built once by
/// [`Config::resolve`] and then shared by reference.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite database, the master key and the demo credentials live.
    pub data_dir: PathBuf,
    /// The database; `postgres://` selects PostgreSQL.
    pub database_url: DatabaseUrl,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// ISO 8583 listen address.
    pub iso: SocketAddr,
    /// Simulators' listen address.
    pub sim: SocketAddr,
    /// IANA name of the zone that business dates and the cut-off are in.
    pub business_time_zone: String,
    /// Daily cut-off in the business time zone.
    pub cutoff: CutOff,
    /// `tracing` filter directives.
    pub log: String,
    /// Log line format on stderr.
    pub log_format: LogFormat,
    /// The master key when given in `KASSA_MASTER_KEY`; `None` means "use `<data-dir>/master.key`".
    pub master_key: Option<MasterKey>,
    /// Seed demo data into an empty database and write the demo credentials file.
    pub demo: bool,
    /// Run the channel simulators in this process (and serve them on [`Config::sim`]).
    pub simulators: bool,
    /// The card issuer over the issuer link (`http://HOST:PORT` of `kassa sim`, or the full
    /// URL of an issuer endpoint); `None`: the in-process simulator, when `simulators` is on.
    pub issuer_url: Option<String>,
    /// Where one-time codes are mailed (`smtps://HOST[:PORT]`, `smtp+starttls://HOST[:PORT]`, or
    /// `smtp://localhost[:PORT]` for a relay on this machine); `None`: appended to
    /// `<data-dir>/outbox.txt`, the development sink.
    pub smtp_url: Option<String>,
    /// The From address of that mail; needed with `smtp_url`.
    pub smtp_from: Option<String>,
    /// The SMS gateway (`https://…`, or `http://` on this machine) that sends one-time codes to
    /// phone contacts, with the API key in `KASSA_SMS_API_KEY`; `None`: no SMS.
    pub sms_url: Option<String>,
    /// The host's HTTP base URL as payers and wallets reach it: merchant-presented QR codes and
    /// the wallets' notification URLs are built on it. `None`: the HTTP listener's own address
    /// (right on one machine, as under `kassa up`).
    pub public_url: Option<String>,
    /// The JSON file holding the wallet providers' credentials (app ids, keys; keep it 0600);
    /// `None`: the in-process wallet simulator's, when `simulators` is on, else no QR payments.
    pub wallet_credentials: Option<PathBuf>,
    /// Where the Alipay-compatible gateway may send merchant notifications (`notify_url`): hosts
    /// (`shop.example.com`, any port unless one is given) or `http(s)://` URL prefixes (scheme,
    /// host, port and the start of the path). Loopback URLs are allowed under `kassa up`
    /// besides; empty: nowhere else.
    pub notify_url_allow: Vec<String>,
    /// ISO 8583 connections one address (IPv6: one /64) may hold at once; `None`: the
    /// gateway's default (64, a shop's terminals behind one NAT address). Raise it for a
    /// concentrator that brings a whole region's terminals from one address.
    pub iso_connections_per_address_max: Option<usize>,
    /// The zone PIN key shared with the card issuer (`KASSA_ZONE_PIN_KEY` only, never the
    /// file); `None`: the demo zone PIN key where simulators or demo data are on, else an error
    /// when a card issuer is used.
    pub zone_pin_key: Option<TdesKey>,
    /// PEM certificate chain (leaf first) of the listeners; set together with
    /// [`Config::tls_key`], it makes HTTP serve HTTPS only. Read by `crate::tls`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of [`Config::tls_cert`]; both or neither.
    pub tls_key: Option<PathBuf>,
    /// The ISO 8583 listener speaks TLS with the same certificate (needs `tls_cert`/`tls_key`).
    pub iso_tls: bool,
}

/// One layer of settings; `None` means "not set here, ask the layer below".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::database_url`].
    pub database_url: Option<DatabaseUrl>,
    /// See [`Config::http`].
    pub http: Option<SocketAddr>,
    /// See [`Config::iso`].
    pub iso: Option<SocketAddr>,
    /// See [`Config::sim`].
    pub sim: Option<SocketAddr>,
    /// See [`Config::business_time_zone`].
    pub business_time_zone: Option<String>,
    /// See [`Config::cutoff`].
    pub cutoff: Option<CutOff>,
    /// See [`Config::log`].
    pub log: Option<String>,
    /// See [`Config::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`Config::master_key`]. Never read from a file.
    #[serde(skip)]
    pub master_key: Option<MasterKey>,
    /// See [`Config::demo`].
    pub demo: Option<bool>,
    /// See [`Config::simulators`].
    pub simulators: Option<bool>,
    /// See [`Config::issuer_url`].
    pub issuer_url: Option<String>,
    /// See [`Config::smtp_url`].
    pub smtp_url: Option<String>,
    /// See [`Config::smtp_from`].
    pub smtp_from: Option<String>,
    /// See [`Config::sms_url`].
    pub sms_url: Option<String>,
    /// See [`Config::public_url`].
    pub public_url: Option<String>,
    /// See [`Config::wallet_credentials`].
    pub wallet_credentials: Option<PathBuf>,
    /// See [`Config::notify_url_allow`].
    pub notify_url_allow: Option<Vec<String>>,
    /// See [`Config::iso_connections_per_address_max`].
    pub iso_connections_per_address_max: Option<usize>,
    /// See [`Config::zone_pin_key`]. Never read from a file.
    #[serde(skip)]
    pub zone_pin_key: Option<TdesKey>,
    /// See [`Config::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Config::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`Config::iso_tls`].
    pub iso_tls: Option<bool>,
}

/// Why the configuration cannot be loaded. Messages are one line and carry no secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML of the expected shape.
    #[error("config file {path}, line {line}: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// The parser's message (without the source snippet, which may hold a password).
        message: String,
    },
    /// An environment variable holds an unusable value.
    #[error("environment variable {name}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Why its value is rejected.
        reason: String,
    },
    /// The business time zone is not an IANA-style name.
    #[error("business_time_zone {0:?} is not a time zone name like Asia/Shanghai")]
    TimeZone(String),
    /// The TLS settings do not fit together (a certificate without its key, `iso_tls` without
    /// either).
    #[error("{0}")]
    Tls(&'static str),
    /// A limit is out of its range.
    #[error("{0}")]
    Limit(&'static str),
}

impl Config {
    /// Lays `layers` (lowest first) over the defaults.
    pub fn resolve(layers: impl IntoIterator<Item = ConfigLayer>) -> Result<Config, ConfigError> {
        let merged = layers.into_iter().fold(ConfigLayer::default(), ConfigLayer::overlaid_by);
        let data_dir = merged.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = merged.database_url.unwrap_or_else(|| DatabaseUrl::sqlite_in(&data_dir));
        let business_time_zone = merged.business_time_zone.unwrap_or_else(|| DEFAULT_BUSINESS_TIME_ZONE.to_owned());
        if !is_time_zone_name(&business_time_zone) {
            return Err(ConfigError::TimeZone(business_time_zone));
        }
        let iso_tls = merged.iso_tls.unwrap_or(false);
        if merged.iso_connections_per_address_max == Some(0) {
            return Err(ConfigError::Limit("iso_connections_per_address_max must be at least 1"));
        }
        match (&merged.tls_cert, &merged.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::Tls("tls_cert is set but tls_key is not: give both or neither"))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Tls("tls_key is set but tls_cert is not: give both or neither"))
            }
            (None, None) if iso_tls => {
                return Err(ConfigError::Tls("iso_tls needs a certificate and key: set tls_cert and tls_key"))
            }
            _ => {}
        }
        Ok(Config {
            database_url,
            http: merged.http.unwrap_or_else(|| default_addr(DEFAULT_HTTP)),
            iso: merged.iso.unwrap_or_else(|| default_addr(DEFAULT_ISO)),
            sim: merged.sim.unwrap_or_else(|| default_addr(DEFAULT_SIM)),
            business_time_zone,
            cutoff: merged.cutoff.unwrap_or(DEFAULT_CUTOFF),
            log: merged.log.unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            log_format: merged.log_format.unwrap_or_default(),
            master_key: merged.master_key,
            demo: merged.demo.unwrap_or(false),
            simulators: merged.simulators.unwrap_or(false),
            issuer_url: merged.issuer_url,
            smtp_url: merged.smtp_url,
            smtp_from: merged.smtp_from,
            sms_url: merged.sms_url,
            public_url: merged.public_url,
            wallet_credentials: merged.wallet_credentials,
            notify_url_allow: merged.notify_url_allow.unwrap_or_default(),
            iso_connections_per_address_max: merged.iso_connections_per_address_max,
            zone_pin_key: merged.zone_pin_key,
            tls_cert: merged.tls_cert,
            tls_key: merged.tls_key,
            iso_tls,
            data_dir,
        })
    }

    /// The usual load: defaults, then `file`, then the environment read through `env_var`
    /// (`std::env::var` in the binary, a map in tests), then `flags`.
    pub fn load(
        file: Option<&Path>,
        env_var: impl Fn(&str) -> Option<String>,
        flags: ConfigLayer,
    ) -> Result<Config, ConfigError> {
        let file_layer = match file {
            Some(path) => ConfigLayer::from_file(path)?,
            None => ConfigLayer::default(),
        };
        let env_layer = ConfigLayer::from_env(env_var)?;
        Config::resolve([file_layer, env_layer, flags])
    }

    /// `<data-dir>/master.key`.
    pub fn master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    /// `<data-dir>/demo/credentials.json`.
    pub fn demo_credentials_path(&self) -> PathBuf {
        self.data_dir.join("demo").join("credentials.json")
    }
}

fn default_addr(text: &str) -> SocketAddr {
    // The defaults are literals checked by `defaults_match_the_contract`; a parse failure here
    // would be a programmer error, so fall back to an unspecified address rather than panic.
    text.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn is_time_zone_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
}

impl ConfigLayer {
    /// `self` with every value that `over` sets replaced by `over`'s.
    pub fn overlaid_by(self, over: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            data_dir: over.data_dir.or(self.data_dir),
            database_url: over.database_url.or(self.database_url),
            http: over.http.or(self.http),
            iso: over.iso.or(self.iso),
            sim: over.sim.or(self.sim),
            business_time_zone: over.business_time_zone.or(self.business_time_zone),
            cutoff: over.cutoff.or(self.cutoff),
            log: over.log.or(self.log),
            log_format: over.log_format.or(self.log_format),
            master_key: over.master_key.or(self.master_key),
            demo: over.demo.or(self.demo),
            simulators: over.simulators.or(self.simulators),
            issuer_url: over.issuer_url.or(self.issuer_url),
            smtp_url: over.smtp_url.or(self.smtp_url),
            smtp_from: over.smtp_from.or(self.smtp_from),
            sms_url: over.sms_url.or(self.sms_url),
            public_url: over.public_url.or(self.public_url),
            wallet_credentials: over.wallet_credentials.or(self.wallet_credentials),
            notify_url_allow: over.notify_url_allow.or(self.notify_url_allow),
            iso_connections_per_address_max: over
                .iso_connections_per_address_max
                .or(self.iso_connections_per_address_max),
            zone_pin_key: over.zone_pin_key.or(self.zone_pin_key),
            tls_cert: over.tls_cert.or(self.tls_cert),
            tls_key: over.tls_key.or(self.tls_key),
            iso_tls: over.iso_tls.or(self.iso_tls),
        }
    }

    /// Reads a TOML file whose keys are the field names of [`Config`] (without `master_key`).
    pub fn from_file(path: &Path) -> Result<ConfigLayer, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile { path: path.to_owned(), source })?;
        Self::from_toml(&text).map_err(|(line, message)| ConfigError::ParseFile {
            path: path.to_owned(),
            line,
            message,
        })
    }

    fn from_toml(text: &str) -> Result<ConfigLayer, (usize, String)> {
        toml::from_str(text).map_err(|error: toml::de::Error| {
            let offset = error.span().map_or(0, |span| span.start);
            let line = text.get(..offset).map_or(1, |head| head.lines().count().max(1));
            (line, error.message().trim().to_owned())
        })
    }

    /// Reads the `KASSA_*` variables through `env_var`; unset or empty variables set nothing.
    pub fn from_env(env_var: impl Fn(&str) -> Option<String>) -> Result<ConfigLayer, ConfigError> {
        let get = |name: &str| env_var(name).filter(|value| !value.trim().is_empty());
        let addr = |name: &'static str| -> Result<Option<SocketAddr>, ConfigError> {
            get(name)
                .map(|value| {
                    value.trim().parse().map_err(|_| ConfigError::Env {
                        name,
                        reason: format!("{value:?} is not an address like 127.0.0.1:8080"),
                    })
                })
                .transpose()
        };
        let database_url = get(env::DATABASE_URL)
            .map(|value| {
                DatabaseUrl::parse(value.trim())
                    .map_err(|error| ConfigError::Env { name: env::DATABASE_URL, reason: error.to_string() })
            })
            .transpose()?;
        let master_key = get(env::MASTER_KEY)
            .map(|value| {
                // The parser's own error is not used: it may say more about the value than needed.
                MasterKey::from_hex(value.trim()).map_err(|_| ConfigError::Env {
                    name: env::MASTER_KEY,
                    reason: format!("expected {MASTER_KEY_HEX_CHARS} hex characters"),
                })
            })
            .transpose()?;
        let zone_pin_key = get(env::ZONE_PIN_KEY)
            .map(|value| {
                TdesKey::from_hex(value.trim()).map_err(|_| ConfigError::Env {
                    name: env::ZONE_PIN_KEY,
                    reason: "expected 32 hex characters".to_owned(),
                })
            })
            .transpose()?;
        let iso_tls = get(env::ISO_TLS)
            .map(|value| match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => {
                    Err(ConfigError::Env { name: env::ISO_TLS, reason: format!("{value:?} is neither true nor false") })
                }
            })
            .transpose()?;
        let iso_connections_per_address_max = get(env::ISO_CONNECTIONS_PER_ADDRESS_MAX)
            .map(|value| match value.trim().parse::<usize>() {
                Ok(count) if count > 0 => Ok(count),
                _ => Err(ConfigError::Env {
                    name: env::ISO_CONNECTIONS_PER_ADDRESS_MAX,
                    reason: format!("{value:?} is not a positive number"),
                }),
            })
            .transpose()?;
        Ok(ConfigLayer {
            data_dir: get(env::DATA_DIR).map(PathBuf::from),
            database_url,
            http: addr(env::HTTP)?,
            iso: addr(env::ISO)?,
            sim: addr(env::SIM)?,
            log: get(env::LOG),
            master_key,
            issuer_url: get(env::ISSUER_URL).map(|url| url.trim().to_owned()),
            smtp_url: get(env::SMTP_URL).map(|url| url.trim().to_owned()),
            smtp_from: get(env::SMTP_FROM).map(|from| from.trim().to_owned()),
            sms_url: get(env::SMS_URL).map(|url| url.trim().to_owned()),
            public_url: get(env::PUBLIC_URL).map(|url| url.trim().trim_end_matches('/').to_owned()),
            wallet_credentials: get(env::WALLET_CREDENTIALS).map(PathBuf::from),
            notify_url_allow: get(env::NOTIFY_URL_ALLOW).map(|list| {
                list.split(',').map(str::trim).filter(|entry| !entry.is_empty()).map(str::to_owned).collect()
            }),
            iso_connections_per_address_max,
            zone_pin_key,
            tls_cert: get(env::TLS_CERT).map(PathBuf::from),
            tls_key: get(env::TLS_KEY).map(PathBuf::from),
            iso_tls,
            ..ConfigLayer::default()
        })
    }
}

/// A database URL whose password never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
}

/// Why a text is not a database URL Kassa can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database URL {masked} must start with sqlite:// or postgres://")]
pub struct DatabaseUrlError {
    masked: String,
}

/// The database families Kassa supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL (or a compatible server).
    Postgres,
}

impl DatabaseUrl {
    /// Accepts `sqlite://PATH`, `postgres://…` and `postgresql://…`, the forms `kassa-store` opens.
    pub fn parse(text: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
        let url = DatabaseUrl { url: text.to_owned() };
        match url.kind() {
            Some(_) => Ok(url),
            None => Err(DatabaseUrlError { masked: url.to_string() }),
        }
    }

    /// The default: `sqlite://<data-dir>/kassa.db`.
    pub fn sqlite_in(data_dir: &Path) -> DatabaseUrl {
        DatabaseUrl { url: format!("sqlite://{}", data_dir.join("kassa.db").display()) }
    }

    /// Which database the URL selects.
    pub fn kind(&self) -> Option<DatabaseKind> {
        if self.url.starts_with("sqlite://") {
            Some(DatabaseKind::Sqlite)
        } else if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            Some(DatabaseKind::Postgres)
        } else {
            None
        }
    }

    /// The URL with its password, for the database driver only.
    pub fn expose(&self) -> &str {
        &self.url
    }

    fn masked(&self) -> String {
        let (before_query, query) = match self.url.split_once('?') {
            Some((head, query)) => (head, Some(query)),
            None => (self.url.as_str(), None),
        };
        let mut shown = mask_userinfo_password(before_query);
        if let Some(query) = query {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            shown.push('?');
            shown.push_str(&params.join("&"));
        }
        shown
    }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`.
fn mask_userinfo_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    // The last '@' ends the userinfo: a password may itself contain '@'.
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{host}{path}"),
        None => url.to_owned(),
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.masked())
    }
}

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DatabaseUrl::parse(text)
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DatabaseUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A time of day `HH:MM` (24-hour clock) at which the business day changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutOff {
    hour: u8,
    minute: u8,
}

/// Why a text is not a cut-off time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cut-off {0:?} is not a time like 23:00")]
pub struct CutOffError(String);

impl CutOff {
    /// Hour, 0–23.
    pub fn hour(self) -> u8 {
        self.hour
    }

    /// Minute, 0–59.
    pub fn minute(self) -> u8 {
        self.minute
    }
}

impl FromStr for CutOff {
    type Err = CutOffError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || CutOffError(text.to_owned());
        let (hour, minute) = text.split_once(':').ok_or_else(error)?;
        if hour.len() != 2 || minute.len() != 2 {
            return Err(error());
        }
        let hour: u8 = hour.parse().map_err(|_| error())?;
        let minute: u8 = minute.parse().map_err(|_| error())?;
        if hour > 23 || minute > 59 {
            return Err(error());
        }
        Ok(CutOff { hour, minute })
    }
}

impl fmt::Display for CutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl<'de> Deserialize<'de> for CutOff {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Why a text is not a log format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log format {0:?} is neither text nor json")]
pub struct LogFormatError(String);

impl FromStr for LogFormat {
    type Err = LogFormatError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(LogFormatError(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::resolve([]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("./kassa-data"));
        assert_eq!(config.database_url.expose(), "sqlite://./kassa-data/kassa.db");
        assert_eq!(config.http, addr("127.0.0.1:8080"));
        assert_eq!(config.iso, addr("127.0.0.1:8583"));
        assert_eq!(config.sim, addr("127.0.0.1:8081"));
        assert_eq!(config.business_time_zone, "Asia/Shanghai");
        assert_eq!(config.cutoff.to_string(), "23:00");
        assert_eq!(config.log, "info");
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.master_key.is_none());
        assert!(!config.demo);
        assert!(config.issuer_url.is_none());
        assert!(config.zone_pin_key.is_none());
        assert!(config.tls_cert.is_none() && config.tls_key.is_none() && !config.iso_tls);
    }

    #[test]
    fn tls_settings_come_from_every_layer_and_must_fit_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kassa.toml");
        std::fs::write(&file, "tls_cert = \"/file/cert.pem\"\ntls_key = \"/file/key.pem\"\niso_tls = true\n").unwrap();
        let config = Config::load(Some(&file), env_of(&[]), ConfigLayer::default()).unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("/file/cert.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("/file/key.pem")));
        assert!(config.iso_tls);

        let env = env_of(&[("KASSA_TLS_CERT", "/env/c.pem"), ("KASSA_TLS_KEY", "/env/k.pem"), ("KASSA_ISO_TLS", "0")]);
        let config = Config::load(Some(&file), env, ConfigLayer::default()).unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("/env/c.pem")), "environment beats file");
        assert!(!config.iso_tls);
        let flags = ConfigLayer { tls_key: Some(PathBuf::from("/flag/k.pem")), ..ConfigLayer::default() };
        let config = Config::load(Some(&file), env_of(&[]), flags).unwrap();
        assert_eq!(config.tls_key, Some(PathBuf::from("/flag/k.pem")), "flag beats file");

        let half = ConfigLayer { tls_cert: Some(PathBuf::from("c.pem")), ..ConfigLayer::default() };
        assert!(Config::resolve([half]).unwrap_err().to_string().contains("tls_key is not"));
        let half = ConfigLayer { tls_key: Some(PathBuf::from("k.pem")), ..ConfigLayer::default() };
        assert!(Config::resolve([half]).unwrap_err().to_string().contains("tls_cert is not"));
        let iso_alone = ConfigLayer { iso_tls: Some(true), ..ConfigLayer::default() };
        assert!(Config::resolve([iso_alone]).unwrap_err().to_string().starts_with("iso_tls needs"));
        let error = Config::load(None, env_of(&[("KASSA_ISO_TLS", "maybe")]), ConfigLayer::default()).unwrap_err();
        assert!(error.to_string().starts_with("environment variable KASSA_ISO_TLS"), "{error}");
    }

    #[test]
    fn notify_url_allow_comes_from_the_file_or_a_comma_separated_variable() {
        assert!(Config::resolve([]).unwrap().notify_url_allow.is_empty(), "nowhere by default");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kassa.toml");
        std::fs::write(&file, "notify_url_allow = [\"shop.example.com\", \"https://pos.example.net/notify\"]\n")
            .unwrap();
        let config = Config::load(Some(&file), env_of(&[]), ConfigLayer::default()).unwrap();
        assert_eq!(config.notify_url_allow, ["shop.example.com", "https://pos.example.net/notify"]);
        let env = env_of(&[("KASSA_NOTIFY_URL_ALLOW", " a.example.com, ,https://b.example.com/n ")]);
        let config = Config::load(Some(&file), env, ConfigLayer::default()).unwrap();
        assert_eq!(config.notify_url_allow, ["a.example.com", "https://b.example.com/n"], "environment beats file");
    }

    #[test]
    fn database_default_follows_the_resolved_data_dir() {
        let flags = ConfigLayer { data_dir: Some(PathBuf::from("/var/lib/kassa")), ..ConfigLayer::default() };
        let config = Config::resolve([flags]).unwrap();
        assert_eq!(config.database_url.expose(), "sqlite:///var/lib/kassa/kassa.db");
    }

    #[test]
    fn file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kassa.toml");
        std::fs::write(
            &file,
            r#"
http = "127.0.0.1:1001"
iso = "127.0.0.1:1002"
sim = "127.0.0.1:1003"
data_dir = "/from/file"
cutoff = "22:30"
business_time_zone = "Europe/Berlin"
log = "debug"
log_format = "json"
demo = true
issuer_url = "http://127.0.0.1:1004"
smtp_url = "smtps://mail.example"
smtp_from = "kassa@example.com"
"#,
        )
        .unwrap();
        let env = env_of(&[("KASSA_ISO", "127.0.0.1:2002"), ("KASSA_SIM", "127.0.0.1:2003"), ("KASSA_LOG", "warn")]);
        let flags = ConfigLayer { sim: Some(addr("127.0.0.1:3003")), ..ConfigLayer::default() };
        let config = Config::load(Some(&file), env, flags).unwrap();
        assert_eq!(config.http, addr("127.0.0.1:1001"), "file beats default");
        assert_eq!(config.iso, addr("127.0.0.1:2002"), "environment beats file");
        assert_eq!(config.sim, addr("127.0.0.1:3003"), "flag beats environment");
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.cutoff.hour(), 22);
        assert_eq!(config.cutoff.minute(), 30);
        assert_eq!(config.business_time_zone, "Europe/Berlin");
        assert_eq!(config.log, "warn");
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(config.demo);
        assert_eq!(config.issuer_url.as_deref(), Some("http://127.0.0.1:1004"));
        assert_eq!(config.smtp_url.as_deref(), Some("smtps://mail.example"));
        assert_eq!(config.smtp_from.as_deref(), Some("kassa@example.com"));
        let env = env_of(&[("KASSA_SMTP_URL", " smtp+starttls://relay:587 "), ("KASSA_SMTP_FROM", "k@e.com")]);
        let from_env = Config::load(Some(&file), env, ConfigLayer::default()).unwrap();
        assert_eq!(from_env.smtp_url.as_deref(), Some("smtp+starttls://relay:587"), "environment beats file");
        assert_eq!(from_env.smtp_from.as_deref(), Some("k@e.com"));
        assert_eq!(config.iso_connections_per_address_max, None, "the gateway's default");
        let env = env_of(&[("KASSA_ISO_CONNECTIONS_PER_ADDRESS_MAX", "512")]);
        let concentrator = Config::load(Some(&file), env, ConfigLayer::default()).unwrap();
        assert_eq!(concentrator.iso_connections_per_address_max, Some(512));
        for bad in ["0", "-1", "many"] {
            let env = env_of(&[("KASSA_ISO_CONNECTIONS_PER_ADDRESS_MAX", bad)]);
            assert!(Config::load(Some(&file), env, ConfigLayer::default()).is_err(), "{bad}");
        }
        let zero = ConfigLayer { iso_connections_per_address_max: Some(0), ..ConfigLayer::default() };
        assert!(Config::resolve([zero]).is_err());
        let env = env_of(&[("KASSA_ISSUER_URL", "http://127.0.0.1:2004")]);
        let flags = ConfigLayer { issuer_url: Some("http://127.0.0.1:3004".to_owned()), ..ConfigLayer::default() };
        let from_env =
            Config::load(Some(&file), env_of(&[("KASSA_ISSUER_URL", "http://127.0.0.1:2004")]), ConfigLayer::default())
                .unwrap();
        assert_eq!(from_env.issuer_url.as_deref(), Some("http://127.0.0.1:2004"), "environment beats file");
        let from_flag = Config::load(Some(&file), env, flags).unwrap();
        assert_eq!(from_flag.issuer_url.as_deref(), Some("http://127.0.0.1:3004"), "flag beats environment");
    }

    #[test]
    fn environment_reads_every_kassa_variable() {
        let key_hex = "ab".repeat(32);
        let env = env_of(&[
            ("KASSA_DATABASE_URL", "postgres://kassa:pw@db:5432/kassa"),
            ("KASSA_HTTP", "0.0.0.0:80"),
            ("KASSA_DATA_DIR", "/data"),
            ("KASSA_MASTER_KEY", &key_hex),
            ("KASSA_ZONE_PIN_KEY", "1122334455667788AABBCCDDEEFF0011"),
        ]);
        let config = Config::load(None, env, ConfigLayer::default()).unwrap();
        let zone_pin_key = config.zone_pin_key.as_ref().unwrap();
        let expected = TdesKey::from_hex("1122334455667788AABBCCDDEEFF0011").unwrap();
        assert_eq!(zone_pin_key.expose_secret(), expected.expose_secret());
        assert!(!format!("{config:?}").contains("1122334455667788"), "the key prints masked");
        assert_eq!(config.database_url.kind(), Some(DatabaseKind::Postgres));
        assert_eq!(config.http, addr("0.0.0.0:80"));
        assert_eq!(config.data_dir, PathBuf::from("/data"));
        assert_eq!(config.master_key.unwrap().expose_secret(), &[0xab; 32]);
    }

    #[test]
    fn bad_environment_values_name_the_variable_without_the_key() {
        let error = Config::load(None, env_of(&[("KASSA_MASTER_KEY", "secret-but-short")]), ConfigLayer::default())
            .unwrap_err()
            .to_string();
        assert_eq!(error, "environment variable KASSA_MASTER_KEY: expected 64 hex characters");
        let error =
            Config::load(None, env_of(&[("KASSA_HTTP", "nowhere")]), ConfigLayer::default()).unwrap_err().to_string();
        assert!(error.starts_with("environment variable KASSA_HTTP:"), "{error}");
        let error = Config::load(None, env_of(&[("KASSA_ZONE_PIN_KEY", "0123")]), ConfigLayer::default())
            .unwrap_err()
            .to_string();
        assert_eq!(error, "environment variable KASSA_ZONE_PIN_KEY: expected 32 hex characters");
    }

    #[test]
    fn config_file_errors_give_the_line_but_not_the_source_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kassa.toml");
        std::fs::write(&file, "database_url = \"postgres://u:hunter2@h/db\"\nhttp = \"not an address\"\n").unwrap();
        let error = Config::load(Some(&file), env_of(&[]), ConfigLayer::default()).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");

        for secret in ["master_key", "zone_pin_key"] {
            std::fs::write(&file, format!("{secret} = \"00\"\n")).unwrap();
            let error = Config::load(Some(&file), env_of(&[]), ConfigLayer::default()).unwrap_err().to_string();
            assert!(error.contains("unknown field"), "{secret}: {error}");
        }
    }

    #[test]
    fn database_url_masks_the_password() {
        let url = DatabaseUrl::parse("postgres://kassa:s3cr@t@db.example:5432/kassa").unwrap();
        assert_eq!(url.to_string(), "postgres://kassa:***@db.example:5432/kassa");
        assert_eq!(format!("{url:?}"), "DatabaseUrl(\"postgres://kassa:***@db.example:5432/kassa\")");
        assert_eq!(url.expose(), "postgres://kassa:s3cr@t@db.example:5432/kassa");

        let url = DatabaseUrl::parse("postgresql://db/kassa?user=k&password=s3cret&ssl=1").unwrap();
        assert_eq!(url.to_string(), "postgresql://db/kassa?user=k&password=***&ssl=1");

        let url = DatabaseUrl::parse("postgres://kassa@db/kassa").unwrap();
        assert_eq!(url.to_string(), "postgres://kassa@db/kassa");

        let config = Config::resolve([ConfigLayer {
            database_url: Some(DatabaseUrl::parse("postgres://a:topsecret@h/d").unwrap()),
            ..ConfigLayer::default()
        }])
        .unwrap();
        assert!(!format!("{config:?}").contains("topsecret"));
    }

    #[test]
    fn database_url_rejects_other_schemes_without_leaking() {
        assert!(DatabaseUrl::parse("sqlite:kassa.db").is_err(), "kassa-store opens sqlite://PATH only");
        let error = DatabaseUrl::parse("mysql://root:pw@h/d").unwrap_err();
        assert_eq!(error.to_string(), "database URL mysql://root:***@h/d must start with sqlite:// or postgres://");
    }

    #[test]
    fn cutoff_parses_only_valid_times() {
        assert_eq!("00:00".parse::<CutOff>().unwrap().to_string(), "00:00");
        assert_eq!("23:59".parse::<CutOff>().unwrap().to_string(), "23:59");
        for bad in ["24:00", "23:60", "7:00", "2300", "", "ab:cd"] {
            assert!(bad.parse::<CutOff>().is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zone_must_look_like_a_zone_name() {
        let layer =
            ConfigLayer { business_time_zone: Some("Asia/Shanghai; rm -rf".to_owned()), ..ConfigLayer::default() };
        assert!(matches!(Config::resolve([layer]), Err(ConfigError::TimeZone(_))));
    }
}
