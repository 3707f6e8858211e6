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
//! disk): a day older than that is served incomplete. A row takes [`CLEARING_ENTRY_BYTES`] and
//! no allocation of its own (a request id other than the host's `txn:<id>` adds its text), so
//! the book holds at most about 50 MiB.

use std::collections::VecDeque;

use kassa_domain::{AuthCode, CivilDate, CivilTime, Currency, Money};

use crate::compact::{RequestKey, StoredCode};
use crate::RequestId;

/// `GET`: a day's clearing file, `{date}` as `YYYY-MM-DD`.
pub const CLEARING_PATH: &str = "/sim/v1/issuer/clearing/{date}";

/// The header row.
pub const CLEARING_HEADER: &str = "request_id,type,amount,currency,auth_code,time";

/// Rows kept in memory (the newest).
pub const CLEARING_ENTRIES_MAX: usize = 1_000_000;

/// The memory one row takes in the book.
pub const CLEARING_ENTRY_BYTES: usize = std::mem::size_of::<ClearingEntry>();

/// The issuer's day: the calendar day in Asia/Shanghai.
const CLEARING_UTC_OFFSET_MINUTES: i32 = 8 * 60;

/// One row, kept small: up to a million of them are held (48 bytes each, where the request id,
/// the currency and the approval code as `String`s and a `Money` took 96 and two allocations).
#[derive(Debug, Clone)]
struct ClearingEntry {
    request_id: RequestKey,
    amount_minor: i64,
    at_ms: i64,
    /// ISO 4217 numeric code of the amount's currency.
    currency: u16,
    /// The approval code of an approval; `None` on a reversal.
    auth_code: Option<StoredCode>,
}

/// The rows recorded so far, oldest first.
#[derive(Debug)]
pub(crate) struct ClearingBook {
    entries: VecDeque<ClearingEntry>,
    /// Rows kept: [`CLEARING_ENTRIES_MAX`] but in tests.
    entries_max: usize,
}

impl Default for ClearingBook {
    fn default() -> Self {
        ClearingBook::keeping(CLEARING_ENTRIES_MAX)
    }
}

impl ClearingBook {
    /// A book that keeps the newest `entries_max` rows.
    pub(crate) fn keeping(entries_max: usize) -> ClearingBook {
        ClearingBook { entries: VecDeque::new(), entries_max }
    }

    fn push(&mut self, request_id: &RequestId, amount: Money, auth_code: Option<&AuthCode>, at_ms: i64) {
        while self.entries.len() >= self.entries_max.max(1) {
            self.entries.pop_front();
        }
        self.entries.push_back(ClearingEntry {
            request_id: RequestKey::of(request_id),
            amount_minor: amount.minor(),
            at_ms,
            currency: amount.currency().numeric(),
            auth_code: auth_code.map(StoredCode::of),
        });
    }

    /// Records an approval.
    pub(crate) fn approved(&mut self, request_id: &RequestId, amount: Money, auth_code: &AuthCode, at_ms: i64) {
        self.push(request_id, amount, Some(auth_code), at_ms);
    }

    /// Records the reversal of an approved request.
    pub(crate) fn reversed(&mut self, request_id: &RequestId, amount: Money, at_ms: i64) {
        self.push(request_id, amount, None, at_ms);
    }

    /// Rows held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The clearing file of `date`.
    pub(crate) fn csv(&self, date: CivilDate) -> String {
        let mut csv = format!("{CLEARING_HEADER}\r\n");
        for entry in &self.entries {
            let time = CivilTime::at(entry.at_ms, CLEARING_UTC_OFFSET_MINUTES);
            if time.date() != Some(date) {
                continue;
            }
            // Every row's currency came from a `Currency`: its numeric code names it again.
            let Ok(currency) = Currency::from_numeric(entry.currency) else { continue };
            let amount = Money::from_minor(entry.amount_minor, currency);
            csv.push_str(&format!(
                "{},{},{},{},{},{date} {:02}:{:02}:{:02}\r\n",
                entry.request_id,
                if entry.auth_code.is_some() { "approved" } else { "reversed" },
                amount.to_decimal_string(),
                currency.code(),
                entry.auth_code.as_ref().map_or("", StoredCode::as_str),
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
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_day_lists_its_approvals_and_reversals_in_order() {
        let day = CivilDate::parse("2026-12-06").unwrap();
        // 2026-12-06 10:00:00 in Shanghai.
        let at = day.days_since_epoch() * 86_400_000 + 2 * 3_600_000;
        let mut book = ClearingBook::default();
        let first = RequestId::new("txn:7").unwrap();
        let second = RequestId::new("txn:8").unwrap();
        let code = |text: &str| AuthCode::parse(text).unwrap();
        book.approved(&first, Money::from_minor(1234, Currency::CNY), &code("000001"), at);
        book.approved(&second, Money::from_minor(500, Currency::CNY), &code("000002"), at + 1_000);
        book.reversed(&first, Money::from_minor(1234, Currency::CNY), at + 2_000);
        book.approved(&second, Money::from_minor(500, Currency::CNY), &code("000003"), at + 86_400_000);
        assert_eq!(
            book.csv(day),
            "request_id,type,amount,currency,auth_code,time\r\n\
             txn:7,approved,12.34,CNY,000001,2026-12-06 10:00:00\r\n\
             txn:8,approved,5.00,CNY,000002,2026-12-06 10:00:01\r\n\
             txn:7,reversed,12.34,CNY,,2026-12-06 10:00:02\r\n"
        );
    }

    #[test]
    fn the_book_keeps_its_newest_rows_in_little_room() {
        assert_eq!(CLEARING_ENTRY_BYTES, 48);
        let day = CivilDate::parse("2026-12-06").unwrap();
        let at = day.days_since_epoch() * 86_400_000;
        let mut book = ClearingBook::keeping(3);
        let code = AuthCode::parse("A1B2C3").unwrap();
        for n in 1..=5 {
            book.approved(&RequestId::new(format!("txn:{n}")).unwrap(), Money::from_minor(n, Currency::CNY), &code, at);
            assert_eq!(book.len(), n.min(3) as usize);
        }
        book.reversed(
            &RequestId::new("refund:007").unwrap(),
            Money::from_minor(100, Currency::from_code("USD").unwrap()),
            at,
        );
        assert_eq!(book.len(), 3);
        assert_eq!(
            book.csv(day),
            "request_id,type,amount,currency,auth_code,time\r\n\
             txn:4,approved,0.04,CNY,A1B2C3,2026-12-06 08:00:00\r\n\
             txn:5,approved,0.05,CNY,A1B2C3,2026-12-06 08:00:00\r\n\
             refund:007,reversed,1.00,USD,,2026-12-06 08:00:00\r\n"
        );
    }
}
