//! Merchant notifications of the Alipay-compatible gateway (`trade_status_sync`): the durable
//! outbox. Reads through [`MerchantNotifyStore`] (`store.merchant_notify()`), writes through
//! [`update_notification`], a guard for the one write path.
//!
//! **Invariant**: a row is written by the database itself, in the same transaction as the
//! update that turns a gateway trade (`origin = 'gateway'`) whose `gateway_trades` record names
//! a `notify_url` `paid`, or `closed` (closed unpaid, or paid and now refunded in full: Alipay's
//! `TRADE_CLOSED`), by a trigger of migration 9, so no path that changes a trade can commit the
//! change without its notification; its primary key `(trade_id, trade_status)` makes it once
//! per trade and status.
//! A row changes only through an update at the version its writer read, so of two senders
//! (two host processes on one PostgreSQL) only one claims an attempt, and a row delivered is
//! never claimed again.

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement};
use crate::core::value::{params, Row};
use crate::qr::QrStatus;
use crate::StoreError;

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationState {
    /// Owed: due at `next_attempt_at_ms` (or claimed by a sender until then).
    Pending,
    /// The merchant answered `success`. Final.
    Delivered,
    /// Given up: the last attempt failed, or the URL is not allowed. Final; kept for the back
    /// office with its `last_error`.
    Failed,
    /// The trade has no `notify_url`: nothing to send. Final.
    NotRequested,
}

impl NotificationState {
    /// Every value.
    pub const ALL: &'static [NotificationState] = &[
        NotificationState::Pending,
        NotificationState::Delivered,
        NotificationState::Failed,
        NotificationState::NotRequested,
    ];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Delivered => "delivered",
            NotificationState::Failed => "failed",
            NotificationState::NotRequested => "not_requested",
        }
    }

    /// The value for a stored name.
    pub fn parse(text: &str) -> Option<NotificationState> {
        NotificationState::ALL.iter().copied().find(|state| state.as_str() == text)
    }
}

impl std::fmt::Display for NotificationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantNotificationRecord {
    /// The QR trade (`qr_trades.id`).
    pub trade_id: i64,
    /// The status announced: [`QrStatus::Paid`] (`TRADE_SUCCESS`) or [`QrStatus::Closed`]
    /// (`TRADE_CLOSED`: closed unpaid, or refunded in full).
    pub trade_status: QrStatus,
    /// Where it stands.
    pub state: NotificationState,
    /// The merchant's URL, copied from the gateway trade when it was first sent.
    pub notify_url: Option<String>,
    /// Attempts claimed so far.
    pub attempts: i64,
    /// When it is due (or a sender's claim ends), Unix milliseconds; `None` once final.
    pub next_attempt_at_ms: Option<i64>,
    /// Why the last attempt failed (one line, never a secret).
    pub last_error: Option<String>,
    /// When the merchant acknowledged it, Unix milliseconds.
    pub delivered_at_ms: Option<i64>,
    /// Bumped by every update.
    pub version: i64,
    /// When the trade's change wrote it, Unix milliseconds (the trade's `updated_at_ms`).
    pub created_at_ms: i64,
    /// Last update, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// How many notifications are owed or given up: the backlog the metrics show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationBacklog {
    /// Still owed (`pending`).
    pub pending: i64,
    /// Given up (`failed`), waiting for the back office.
    pub failed: i64,
}

/// Reads of the merchant-notification outbox.
#[async_trait]
pub trait MerchantNotifyStore: Send + Sync {
    /// One notification.
    async fn notification(
        &self,
        trade_id: i64,
        trade_status: QrStatus,
    ) -> Result<Option<MerchantNotificationRecord>, StoreError>;
    /// The notifications of a trade, `paid` before `closed`.
    async fn notifications_of(&self, trade_id: i64) -> Result<Vec<MerchantNotificationRecord>, StoreError>;
    /// Notifications due at `now_ms` (owed, their time come), earliest first, at most `limit`.
    async fn notifications_due(&self, now_ms: i64, limit: i64) -> Result<Vec<MerchantNotificationRecord>, StoreError>;
    /// Notifications given up, oldest first, at most `limit` (for the back office).
    async fn notifications_failed(&self, limit: i64) -> Result<Vec<MerchantNotificationRecord>, StoreError>;
    /// How many are owed and how many were given up.
    async fn notification_backlog(&self) -> Result<NotificationBacklog, StoreError>;
}

const COLUMNS: &str = "trade_id, trade_status, state, notify_url, attempts, next_attempt_at_ms, last_error, \
     delivered_at_ms, version, created_at_ms, updated_at_ms";

fn notification(row: &Row) -> Result<MerchantNotificationRecord, StoreError> {
    let status = row.text(1)?;
    let trade_status = match QrStatus::parse(&status) {
        Some(status @ (QrStatus::Paid | QrStatus::Closed)) => status,
        _ => return Err(StoreError::Corrupt(format!("notification trade status: {status:?}"))),
    };
    let state = row.text(2)?;
    Ok(MerchantNotificationRecord {
        trade_id: row.int(0)?,
        trade_status,
        state: NotificationState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("notification state: {state:?}")))?,
        notify_url: row.opt_text(3)?,
        attempts: row.int(4)?,
        next_attempt_at_ms: row.opt_int(5)?,
        last_error: row.opt_text(6)?,
        delivered_at_ms: row.opt_int(7)?,
        version: row.int(8)?,
        created_at_ms: row.int(9)?,
        updated_at_ms: row.int(10)?,
    })
}

#[async_trait]
impl MerchantNotifyStore for SqlReads {
    async fn notification(
        &self,
        trade_id: i64,
        trade_status: QrStatus,
    ) -> Result<Option<MerchantNotificationRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM merchant_notifications WHERE trade_id = $1 AND trade_status = $2");
        self.one(&sql, &params![trade_id, trade_status.as_str()], notification).await
    }

    async fn notifications_of(&self, trade_id: i64) -> Result<Vec<MerchantNotificationRecord>, StoreError> {
        // 'closed' sorts after 'paid' by name too, but say it: a trade is paid before it closes.
        let sql = format!(
            "SELECT {COLUMNS} FROM merchant_notifications WHERE trade_id = $1 \
             ORDER BY CASE trade_status WHEN 'paid' THEN 0 ELSE 1 END"
        );
        self.all(&sql, &params![trade_id], notification).await
    }

    async fn notifications_due(&self, now_ms: i64, limit: i64) -> Result<Vec<MerchantNotificationRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM merchant_notifications \
             WHERE next_attempt_at_ms IS NOT NULL AND next_attempt_at_ms <= $1 \
             ORDER BY next_attempt_at_ms, trade_id LIMIT $2"
        );
        self.all(&sql, &params![now_ms, limit], notification).await
    }

    async fn notifications_failed(&self, limit: i64) -> Result<Vec<MerchantNotificationRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM merchant_notifications WHERE state = 'failed' \
             ORDER BY updated_at_ms, trade_id LIMIT $1"
        );
        self.all(&sql, &params![limit], notification).await
    }

    async fn notification_backlog(&self) -> Result<NotificationBacklog, StoreError> {
        // Each count runs on its partial index.
        let sql = "SELECT (SELECT COUNT(*) FROM merchant_notifications WHERE next_attempt_at_ms IS NOT NULL), \
                   (SELECT COUNT(*) FROM merchant_notifications WHERE state = 'failed')";
        let row = self.one(sql, &[], |row| Ok((row.int(0)?, row.int(1)?))).await?;
        let (pending, failed) = row.unwrap_or((0, 0));
        Ok(NotificationBacklog { pending, failed })
    }
}

/// The guard that writes `record`'s new state only if the stored version is still
/// `record.version` (the one its writer read; the update bumps it). A `Duplicate` outcome means
/// another writer moved it on (another sender claimed the attempt): nothing was written.
///
/// Identity, status and creation never change.
pub fn update_notification(record: &MerchantNotificationRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "UPDATE merchant_notifications SET state = $1, notify_url = $2, attempts = $3, \
              next_attempt_at_ms = $4, last_error = $5, delivered_at_ms = $6, updated_at_ms = $7, \
              version = version + 1 WHERE trade_id = $8 AND trade_status = $9 AND version = $10",
        params: params![
            record.state.as_str(),
            record.notify_url.clone(),
            record.attempts,
            record.next_attempt_at_ms,
            record.last_error.clone(),
            record.delivered_at_ms,
            record.updated_at_ms,
            record.trade_id,
            record.trade_status.as_str(),
            record.version
        ]
        .to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for state in NotificationState::ALL {
            assert_eq!(NotificationState::parse(state.as_str()), Some(*state));
        }
        assert_eq!(NotificationState::parse("sent"), None);
    }
}
