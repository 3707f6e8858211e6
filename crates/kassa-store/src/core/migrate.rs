//! Schema migrations: numbered SQL files per backend, embedded in the binary, applied in order,
//! each in its own transaction together with its row in `kassa_schema_migrations`. A migration
//! whose text changed after it was applied is refused (its checksum no longer matches), and a
//! database with migrations this binary does not know is refused too (a newer binary made it).
//!
//! Hand-written rather than a migration crate: both backends share this one mechanism and the
//! same checks, and it is a few dozen lines.

use sha2::{Digest, Sha256};

/// One migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

impl Migration {
    pub(crate) fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../../migrations/sqlite/0001_foundation.sql") },
    Migration { version: 2, name: "auth", sql: include_str!("../../migrations/sqlite/0002_auth.sql") },
    Migration { version: 3, name: "gateway", sql: include_str!("../../migrations/sqlite/0003_gateway.sql") },
    Migration {
        version: 4,
        name: "gateway_pending",
        sql: include_str!("../../migrations/sqlite/0004_gateway_pending.sql"),
    },
    Migration {
        version: 5,
        name: "gateway_batch_upload",
        sql: include_str!("../../migrations/sqlite/0005_gateway_batch_upload.sql"),
    },
    Migration { version: 6, name: "qr", sql: include_str!("../../migrations/sqlite/0006_qr.sql") },
    Migration {
        version: 7,
        name: "qr_trade_failure",
        sql: include_str!("../../migrations/sqlite/0007_qr_trade_failure.sql"),
    },
    Migration { version: 8, name: "aggregator", sql: include_str!("../../migrations/sqlite/0008_aggregator.sql") },
    Migration {
        version: 9,
        name: "merchant_notifications",
        sql: include_str!("../../migrations/sqlite/0009_merchant_notifications.sql"),
    },
    Migration { version: 10, name: "api", sql: include_str!("../../migrations/sqlite/0010_api.sql") },
    Migration {
        version: 11,
        name: "refund_requests",
        sql: include_str!("../../migrations/sqlite/0011_refund_requests.sql"),
    },
    Migration { version: 12, name: "recon", sql: include_str!("../../migrations/sqlite/0012_recon.sql") },
    Migration {
        version: 13,
        name: "corrections_payouts",
        sql: include_str!("../../migrations/sqlite/0013_corrections_payouts.sql"),
    },
    Migration {
        version: 14,
        name: "corrections_more",
        sql: include_str!("../../migrations/sqlite/0014_corrections_more.sql"),
    },
    Migration { version: 15, name: "web", sql: include_str!("../../migrations/sqlite/0015_web.sql") },
    Migration {
        version: 16,
        name: "offline_credits",
        sql: include_str!("../../migrations/sqlite/0016_offline_credits.sql"),
    },
    Migration {
        version: 17,
        name: "dashboard_rollup",
        sql: include_str!("../../migrations/sqlite/0017_dashboard_rollup.sql"),
    },
    Migration {
        version: 18,
        name: "recon_corrected",
        sql: include_str!("../../migrations/sqlite/0018_recon_corrected.sql"),
    },
    Migration {
        version: 20,
        name: "lean_card_writes",
        sql: include_str!("../../migrations/sqlite/0020_lean_card_writes.sql"),
    },
    Migration {
        version: 21,
        name: "closed_batches",
        sql: include_str!("../../migrations/sqlite/0021_closed_batches.sql"),
    },
    Migration {
        version: 22,
        name: "batch_versions",
        sql: include_str!("../../migrations/sqlite/0022_batch_versions.sql"),
    },
    Migration { version: 23, name: "batch_totals", sql: include_str!("../../migrations/sqlite/0023_batch_totals.sql") },
    Migration {
        version: 24,
        name: "request_id_blocks",
        sql: include_str!("../../migrations/sqlite/0024_request_id_blocks.sql"),
    },
    Migration {
        version: 25,
        name: "payable_postings_index",
        sql: include_str!("../../migrations/sqlite/0025_payable_postings_index.sql"),
    },
    Migration {
        version: 26,
        name: "entries_by_txn",
        sql: include_str!("../../migrations/sqlite/0026_entries_by_txn.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../../migrations/postgres/0001_foundation.sql") },
    Migration { version: 2, name: "auth", sql: include_str!("../../migrations/postgres/0002_auth.sql") },
    Migration { version: 3, name: "gateway", sql: include_str!("../../migrations/postgres/0003_gateway.sql") },
    Migration {
        version: 4,
        name: "gateway_pending",
        sql: include_str!("../../migrations/postgres/0004_gateway_pending.sql"),
    },
    Migration {
        version: 5,
        name: "gateway_batch_upload",
        sql: include_str!("../../migrations/postgres/0005_gateway_batch_upload.sql"),
    },
    Migration { version: 6, name: "qr", sql: include_str!("../../migrations/postgres/0006_qr.sql") },
    Migration {
        version: 7,
        name: "qr_trade_failure",
        sql: include_str!("../../migrations/postgres/0007_qr_trade_failure.sql"),
    },
    Migration { version: 8, name: "aggregator", sql: include_str!("../../migrations/postgres/0008_aggregator.sql") },
    Migration {
        version: 9,
        name: "merchant_notifications",
        sql: include_str!("../../migrations/postgres/0009_merchant_notifications.sql"),
    },
    Migration { version: 10, name: "api", sql: include_str!("../../migrations/postgres/0010_api.sql") },
    Migration {
        version: 11,
        name: "refund_requests",
        sql: include_str!("../../migrations/postgres/0011_refund_requests.sql"),
    },
    Migration { version: 12, name: "recon", sql: include_str!("../../migrations/postgres/0012_recon.sql") },
    Migration {
        version: 13,
        name: "corrections_payouts",
        sql: include_str!("../../migrations/postgres/0013_corrections_payouts.sql"),
    },
    Migration {
        version: 14,
        name: "corrections_more",
        sql: include_str!("../../migrations/postgres/0014_corrections_more.sql"),
    },
    Migration { version: 15, name: "web", sql: include_str!("../../migrations/postgres/0015_web.sql") },
    Migration {
        version: 16,
        name: "offline_credits",
        sql: include_str!("../../migrations/postgres/0016_offline_credits.sql"),
    },
    Migration {
        version: 17,
        name: "dashboard_rollup",
        sql: include_str!("../../migrations/postgres/0017_dashboard_rollup.sql"),
    },
    Migration {
        version: 18,
        name: "recon_corrected",
        sql: include_str!("../../migrations/postgres/0018_recon_corrected.sql"),
    },
    Migration {
        version: 20,
        name: "lean_card_writes",
        sql: include_str!("../../migrations/postgres/0020_lean_card_writes.sql"),
    },
    Migration {
        version: 21,
        name: "closed_batches",
        sql: include_str!("../../migrations/postgres/0021_closed_batches.sql"),
    },
    Migration {
        version: 22,
        name: "batch_versions",
        sql: include_str!("../../migrations/postgres/0022_batch_versions.sql"),
    },
    Migration {
        version: 23,
        name: "batch_totals",
        sql: include_str!("../../migrations/postgres/0023_batch_totals.sql"),
    },
    Migration {
        version: 24,
        name: "request_id_blocks",
        sql: include_str!("../../migrations/postgres/0024_request_id_blocks.sql"),
    },
    Migration {
        version: 25,
        name: "payable_postings_index",
        sql: include_str!("../../migrations/postgres/0025_payable_postings_index.sql"),
    },
    Migration {
        version: 26,
        name: "entries_by_txn",
        sql: include_str!("../../migrations/postgres/0026_entries_by_txn.sql"),
    },
];

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS kassa_schema_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

/// Compares what the database says was applied with what this binary knows; returns the
/// migrations still to apply.
pub(crate) fn pending(
    known: &'static [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<Migration>, crate::StoreError> {
    for (version, checksum) in applied {
        match known.iter().find(|m| m.version == *version) {
            None => {
                return Err(crate::StoreError::Schema(format!(
                    "the database has migration {version}, which this kassa does not know (a newer version made it)"
                )))
            }
            Some(m) if &m.checksum() != checksum => {
                return Err(crate::StoreError::Schema(format!(
                    "migration {version} ({}) was changed after it was applied",
                    m.name
                )))
            }
            Some(_) => {}
        }
    }
    Ok(known.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).copied().collect())
}
