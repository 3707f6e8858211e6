//! Readiness: may this process take traffic? A trait object so the binary plugs in the store's
//! check (database reachable, migrations applied) without `kassa-server` knowing about SQL.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future, as returned by object-safe async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A check run on every `GET /readyz`.
///
/// `Ok(())` answers 200; `Err(reason)` answers 503 with `reason` as the body, so the reason must
/// be short, one line, and free of secrets and internals a client should not see (say "database
/// unreachable", not the driver's error with the connection string).
pub trait Readiness: Send + Sync + 'static {
    /// Runs the check. `/readyz` bounds it with [`crate::app::READINESS_TIMEOUT`].
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}
