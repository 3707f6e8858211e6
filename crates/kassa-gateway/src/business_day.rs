//! The business day's fields of a message (docs/reference/iso8583.md, "Time"). Where the
//! business day lies — a fixed UTC offset and a daily cut-off — is
//! [`kassa_domain::BusinessDay`], the one calendar every crate uses.

pub use kassa_domain::BusinessDay;

/// Fields 12, 13 and 15 and the stored business date of one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Field 12, local `hhmmss`.
    pub time_hhmmss: String,
    /// Field 13, local `MMDD`.
    pub date_mmdd: String,
    /// Field 15, the business (settlement) day `MMDD`.
    pub settlement_mmdd: String,
    /// The business day `YYYY-MM-DD`.
    pub business_date: String,
}

impl Stamp {
    /// The stamp of `unix_ms` in `day`'s calendar.
    pub fn of(day: &BusinessDay, unix_ms: i64) -> Stamp {
        let local = day.local_time(unix_ms);
        let business = day.date_of(unix_ms);
        Stamp {
            time_hhmmss: local.hhmmss(),
            date_mmdd: format!("{:02}{:02}", local.month, local.day),
            settlement_mmdd: business.mmdd(),
            business_date: business.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_off_moves_the_business_day() {
        let day = BusinessDay::default();
        // 2026-11-22T02:48:29Z = 10:48:29 in Shanghai.
        let morning = Stamp::of(&day, 1_795_315_709_000);
        assert_eq!(morning.time_hhmmss, "104829");
        assert_eq!(morning.date_mmdd, "1122");
        assert_eq!(morning.settlement_mmdd, "1122");
        assert_eq!(morning.business_date, "2026-11-22");
        // 15:00Z = 23:00 in Shanghai: the next business day.
        let late = Stamp::of(&day, 1_795_315_709_000 + (15 * 60 - 2 * 60 - 48) * 60_000 - 29_000);
        assert_eq!(late.time_hhmmss, "230000");
        assert_eq!(late.date_mmdd, "1122");
        assert_eq!(late.settlement_mmdd, "1123");
        assert_eq!(late.business_date, "2026-11-23");
    }
}
