//! The dashboard's roll-up, run with the host (`kassa up`, `kassa serve`): a round at start (a
//! database that an older version filled is folded from its beginning, in chunks), then one
//! every [`ROLLUP_INTERVAL_MS`], until shutdown. Each round folds the card payments and QR trades
//! changed since the last into the dashboard's summary (`kassa_store::rollup`). Hosts sharing a
//! database may all run it: each chunk is written by one of them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kassa_domain::clock::Clock;

/// How often the roll-up runs. A dashboard view reads the records changed since the watermark
/// on top of the summary, about this plus `kassa_store::rollup::SETTLE_MS` of changes.
pub const ROLLUP_INTERVAL_MS: u64 = 5_000;

/// A round that folded more rows than this is logged at `info` (catching up after an
/// upgrade or an outage), the others that wrote at `debug`.
const ROLLUP_LOG_ROWS_MIN: u64 = 10_000;

/// Runs the roll-up until `shutdown` completes; a round in progress is abandoned then (what it
/// committed stays, the rest is the next start's).
pub async fn run(store: kassa_store::Store, clock: Arc<dyn Clock>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let round = kassa_store::rollup::roll_up(&store, clock.now_ms());
        tokio::select! {
            () = &mut shutdown => return,
            outcome = round => match outcome {
                Ok(report) if report.rows_folded > ROLLUP_LOG_ROWS_MIN => tracing::info!(?report, "dashboard roll-up"),
                Ok(report) if report.chunks > 0 => tracing::debug!(?report, "dashboard roll-up"),
                Ok(_) => {}
                Err(error) if error.is_unavailable() => tracing::debug!(%error, "dashboard roll-up: store unavailable"),
                Err(error) => tracing::warn!(%error, "dashboard roll-up failed"),
            },
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(Duration::from_millis(ROLLUP_INTERVAL_MS)) => {}
        }
    }
}
