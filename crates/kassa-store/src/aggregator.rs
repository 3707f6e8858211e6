//! Trades made through the Alipay-compatible gateway (`/gateway.do`): which app asked for each
//! one and the `notify_url` it gave. Reads through [`AggregatorStore`] (`store.aggregator()`);
//! the one write is [`insert_gateway_trade`], a guard for the one write path.
//!
//! **Invariant**: a merchant's `out_trade_no` has at most one row (primary key); the first
//! request that names it sets its app and `notify_url`, and nothing changes them afterwards, so
//! a repeated request can never redirect another request's notifications.
//! **Invariant**: the row is durable before any wallet is called for the trade (the gateway
//! commits it first): the notification outbox always knows whom to tell.

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement};
use crate::core::value::{params, Row};
use crate::StoreError;

/// A trade made through the gateway, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTradeRecord {
    /// The merchant (the app's).
    pub merchant_id: String,
    /// The merchant's number of the trade (the QR trade's `out_trade_no`).
    pub out_trade_no: String,
    /// The gateway app that asked for it.
    pub app_id: String,
    /// Where the app wants notifications about it; `None` when it gave no `notify_url`.
    pub notify_url: Option<String>,
    /// When the gateway first recorded it, Unix milliseconds.
    pub created_at_ms: i64,
}

/// Reads of the gateway's trades.
#[async_trait]
pub trait AggregatorStore: Send + Sync {
    /// The gateway's record of a merchant's trade; `None` when the trade did not come through
    /// the gateway.
    async fn gateway_trade(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<Option<GatewayTradeRecord>, StoreError>;
}

const COLUMNS: &str = "merchant_id, out_trade_no, app_id, notify_url, created_at_ms";

fn gateway_trade(row: &Row) -> Result<GatewayTradeRecord, StoreError> {
    Ok(GatewayTradeRecord {
        merchant_id: row.text(0)?,
        out_trade_no: row.text(1)?,
        app_id: row.text(2)?,
        notify_url: row.opt_text(3)?,
        created_at_ms: row.int(4)?,
    })
}

#[async_trait]
impl AggregatorStore for SqlReads {
    async fn gateway_trade(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<Option<GatewayTradeRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM gateway_trades WHERE merchant_id = $1 AND out_trade_no = $2");
        self.one(&sql, &params![merchant_id, out_trade_no], gateway_trade).await
    }
}

/// The guard that records a trade made through the gateway unless the merchant's
/// `out_trade_no` is recorded already: a `Duplicate` outcome means the row exists (the first
/// request's app and `notify_url` stay).
pub fn insert_gateway_trade(record: &GatewayTradeRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO gateway_trades (merchant_id, out_trade_no, app_id, notify_url, created_at_ms) \
              VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        params: params![
            record.merchant_id.as_str(),
            record.out_trade_no.as_str(),
            record.app_id.as_str(),
            record.notify_url.clone(),
            record.created_at_ms
        ]
        .to_vec(),
    })
}

/// The gateway's record of a trade as the admission of the trade's journal
/// (`WriteUnit::admitted_by`), so both are written in one commit: it always passes — it inserts
/// the row, or, when the merchant's `out_trade_no` is recorded already, rewrites nothing of it
/// (an upsert that sets a column to its own value: the first request's app and `notify_url`
/// stay).
pub fn admit_gateway_trade(record: &GatewayTradeRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO gateway_trades (merchant_id, out_trade_no, app_id, notify_url, created_at_ms) \
              VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id, out_trade_no) \
              DO UPDATE SET created_at_ms = gateway_trades.created_at_ms",
        params: params![
            record.merchant_id.as_str(),
            record.out_trade_no.as_str(),
            record.app_id.as_str(),
            record.notify_url.clone(),
            record.created_at_ms
        ]
        .to_vec(),
    })
}
