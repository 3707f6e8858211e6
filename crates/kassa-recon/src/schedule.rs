//! The daily run: once the providers' day (the calendar day in Asia/Shanghai) has closed and
//! [`SCHEDULE_DELAY_MS`] more have passed, each channel with a connector is reconciled for that
//! day, once (a finished run of the day is not repeated; a failed one is tried again at the next
//! check).

use std::future::Future;

use kassa_domain::CivilDate;

use crate::run::{Reconciler, PROVIDER_DAY};

/// How long after the providers' day closes its statements are fetched (they are complete).
pub const SCHEDULE_DELAY_MS: i64 = 10 * 60 * 1000;

/// How often the schedule looks whether a day is due.
pub const SCHEDULE_CHECK_INTERVAL_MS: u64 = 5 * 60 * 1000;

/// The day due for reconciliation at `now_ms`: yesterday at the providers, once the delay after
/// midnight has passed; else the day before it.
pub fn day_due(now_ms: i64) -> CivilDate {
    let date = PROVIDER_DAY.date_of(now_ms.saturating_sub(SCHEDULE_DELAY_MS));
    CivilDate::from_days_since_epoch(date.days_since_epoch() - 1)
}

impl Reconciler {
    /// Reconciles every channel's due day, then checks again every
    /// [`SCHEDULE_CHECK_INTERVAL_MS`], until `shutdown` completes.
    pub async fn run_schedule(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.reconcile_due().await;
            let pause = tokio::time::sleep(std::time::Duration::from_millis(SCHEDULE_CHECK_INTERVAL_MS));
            tokio::select! {
                () = &mut shutdown => return,
                () = pause => {}
            }
        }
    }

    /// One check: each channel's due day, unless a finished run of it exists.
    pub async fn reconcile_due(&self) {
        let date = day_due(self.now_ms());
        for channel in self.channels() {
            match self.store().recon().finished_run_of_day(channel, &date.to_string()).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(channel = channel.as_str(), %error, "scheduled reconciliation: store unavailable");
                    continue;
                }
            }
            if let Err(error) = self.reconcile_day(channel, date, "schedule").await {
                tracing::warn!(channel = channel.as_str(), date = %date, %error, "scheduled reconciliation failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS_PER_DAY: i64 = 86_400_000;

    #[test]
    fn the_due_day_is_yesterday_at_the_providers_once_the_delay_passed() {
        // 2026-12-06 00:05 in Shanghai is 2026-12-05 16:05 UTC.
        let midnight_utc = CivilDate::parse("2026-12-06").unwrap().days_since_epoch() * MS_PER_DAY - 8 * 3_600_000;
        assert_eq!(day_due(midnight_utc + 5 * 60_000).to_string(), "2026-12-04");
        assert_eq!(day_due(midnight_utc + SCHEDULE_DELAY_MS).to_string(), "2026-12-05");
        assert_eq!(day_due(midnight_utc + 23 * 3_600_000).to_string(), "2026-12-05");
    }
}
