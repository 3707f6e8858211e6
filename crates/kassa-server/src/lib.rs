//! The servers of a Kassa host and what they share: the one [`Config`], the HTTP app with its
//! operational routes ([`App`]), metrics, readiness and the process-wide shutdown.
//!
//! Every HTTP listener is served by [`serve::serve`], the one serving layer: connection table,
//! head/body/request deadlines, shedding, per-client rate limits ([`admission`]), HTTPS
//! ([`tls`]) and a drain that never waits on idle sockets. A new HTTP surface merges its routes
//! into the app's router (or calls [`serve_until_stopped`] on its own listener) and gets all of it.
//!
//! The binary (`kassa`) wires these together with the store; this crate knows sockets and HTTP,
//! not SQL: readiness and durability come in from the outside through [`AppDeps`].
//!
//! **Invariant**: nothing here logs a secret: the config masks the database password and the
//! master key, and request spans carry the path without the query string.

pub mod admission;
pub mod app;
pub mod config;
pub mod metrics;
pub mod readiness;
pub mod serve;
pub mod shutdown;
pub mod tls;

pub use app::{serve_until_stopped, App, AppDeps, BindError, Listeners, ServeError};
pub use config::{Config, ConfigError, ConfigLayer, DatabaseKind, DatabaseUrl, LogFormat};
pub use kassa_crypto::MasterKey;
pub use readiness::{BoxFuture, Readiness};
pub use serve::{serve, Limits, ServeMetrics, ServeOptions};
pub use tls::{load_server_config, TlsAcceptor, TlsError};
