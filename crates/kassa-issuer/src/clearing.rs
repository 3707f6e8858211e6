//! The issuer's clearing file: its own record of what it approved and reversed, per day (the
//! calendar day in Asia/Shanghai), for the acquirer to reconcile its card transactions against.
//! Served at [`CLEARING_PATH`] as CSV (UTF-8, a header row, one row per approval and per
//! reversal of an approved request, oldest first):
//!
//! | column | content |
//! | --- | --- |
//! | `request_id` | the host's request id (`txn:<id>`) |
//! | `type` | `approved` or `reversed` |
//! | `amount` | the amount approved (or given back), decimal in major units |
//! | `currency` | ISO 4217 code |
//! | `auth_code` | the approval code (empty on a reversal) |
//! | `time` | `yyyy-MM-dd HH:mm:ss`, Asia/Shanghai |
//!
//! The simulator keeps the latest [`CLEARING_ENTRIES_MAX`] rows in memory (it keeps no books on
//! disk): a day older than that is served incomplete.

use std::collections::VecDeque;

use kassa_domain::{CivilDate, CivilTime, Money};

use crate::RequestId;

/// `GET`: a day's clearing file, `{date}` as `YYYY-MM-DD`.
pub const CLEARING_PATH: &str = "/sim/v1/issuer/clearing/{date}";

/// The header row.
pub const CLEARING_HEADER: &str = "request_id,type,amount,currency,auth_code,time";

/// Rows kept in memory (the newest).
pub const CLEARING_ENTRIES_MAX: usize = 1_000_000;

/// The issuer's day: the calendar day in Asia/Shanghai.
const CLEARING_UTC_OFFSET_MINUTES: i32 = 8 * 60;

#[derive(Debug, Clone)]
struct ClearingEntry {
    request_id: RequestId,
    reversal: bool,
    amount: Money,
    auth_code: String,
    at_ms: i64,
}

/// The rows recorded so far, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ClearingBook {
    entries: VecDeque<ClearingEntry>,
}

impl ClearingBook {
    fn push(&mut self, entry: ClearingEntry) {
        self.entries.push_back(entry);
        while self.entries.len() > CLEARING_ENTRIES_MAX {
            self.entries.pop_front();
        }
    }

    /// Records an approval.
    pub(crate) fn approved(&mut self, request_id: &RequestId, amount: Money, auth_code: &str, at_ms: i64) {
        let auth_code = auth_code.to_owned();
        self.push(ClearingEntry { request_id: request_id.clone(), reversal: false, amount, auth_code, at_ms });
    }

    /// Records the reversal of an approved request.
    pub(crate) fn reversed(&mut self, request_id: &RequestId, amount: Money, at_ms: i64) {
        let auth_code = String::new();
        self.push(ClearingEntry { request_id: request_id.clone(), reversal: true, amount, auth_code, at_ms });
    }

    /// The clearing file of `date`.
    pub(crate) fn csv(&self, date: CivilDate) -> String {
        let mut csv = format!("{CLEARING_HEADER}\r\n");
        for entry in &self.entries {
            let time = CivilTime::at(entry.at_ms, CLEARING_UTC_OFFSET_MINUTES);
            if time.date() != Some(date) {
                continue;
            }
            csv.push_str(&format!(
                "{},{},{},{},{},{date} {:02}:{:02}:{:02}\r\n",
                entry.request_id,
                if entry.reversal { "reversed" } else { "approved" },
                entry.amount.to_decimal_string(),
                entry.amount.currency().code(),
                entry.auth_code,
                time.hour,
                time.minute,
                time.second,
            ));
        }
        csv
    }
}

#[cfg(test)]
mod tests {
    use kassa_domain::Currency;

    use super::*;

    #[test]
    fn a_day_lists_its_approvals_and_reversals_in_order() {
        let day = CivilDate::parse("2026-12-06").unwrap();
        // 2026-12-06 10:00:00 in Shanghai.
        let at = day.days_since_epoch() * 86_400_000 + 2 * 3_600_000;
        let mut book = ClearingBook::default();
        let first = RequestId::new("txn:7").unwrap();
        let second = RequestId::new("txn:8").unwrap();
        book.approved(&first, Money::from_minor(1234, Currency::CNY), "000001", at);
        book.approved(&second, Money::from_minor(500, Currency::CNY), "000002", at + 1_000);
        book.reversed(&first, Money::from_minor(1234, Currency::CNY), at + 2_000);
        book.approved(&second, Money::from_minor(500, Currency::CNY), "000003", at + 86_400_000);
        assert_eq!(
            book.csv(day),
            "request_id,type,amount,currency,auth_code,time\r\n\
             txn:7,approved,12.34,CNY,000001,2026-12-06 10:00:00\r\n\
             txn:8,approved,5.00,CNY,000002,2026-12-06 10:00:01\r\n\
             txn:7,reversed,12.34,CNY,,2026-12-06 10:00:02\r\n"
        );
    }
}
