//! The business day (docs/reference/iso8583.md, "Time"): a fixed UTC offset (Asia/Shanghai has no daylight
//! saving) and a daily cut-off after which transactions belong to the next day.

use kassa_issuer::CivilTime;

const MS_PER_DAY: i64 = 86_400_000;

/// Where the business day lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessDay {
    /// Minutes east of UTC (480 for Asia/Shanghai).
    pub utc_offset_minutes: i32,
    /// Minutes after local midnight at which the next business day starts (23:00 = 1380).
    pub cut_off_minutes: u32,
}

impl Default for BusinessDay {
    fn default() -> Self {
        BusinessDay { utc_offset_minutes: 8 * 60, cut_off_minutes: 23 * 60 }
    }
}

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

impl BusinessDay {
    /// The stamp of `unix_ms`.
    pub fn stamp(&self, unix_ms: i64) -> Stamp {
        let local = CivilTime::at(unix_ms, self.utc_offset_minutes);
        let after_cut_off = local.hour * 60 + local.minute >= self.cut_off_minutes;
        let business = if after_cut_off { CivilTime::at(unix_ms + MS_PER_DAY, self.utc_offset_minutes) } else { local };
        Stamp {
            time_hhmmss: format!("{:02}{:02}{:02}", local.hour, local.minute, local.second),
            date_mmdd: format!("{:02}{:02}", local.month, local.day),
            settlement_mmdd: format!("{:02}{:02}", business.month, business.day),
            business_date: format!("{:04}-{:02}-{:02}", business.year, business.month, business.day),
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
        let morning = day.stamp(1_795_315_709_000);
        assert_eq!(morning.time_hhmmss, "104829");
        assert_eq!(morning.date_mmdd, "1122");
        assert_eq!(morning.settlement_mmdd, "1122");
        assert_eq!(morning.business_date, "2026-11-22");
        // 15:00Z = 23:00 in Shanghai: the next business day.
        let late = day.stamp(1_795_315_709_000 + (15 * 60 - 2 * 60 - 48) * 60_000 - 29_000);
        assert_eq!(late.time_hhmmss, "230000");
        assert_eq!(late.date_mmdd, "1122");
        assert_eq!(late.settlement_mmdd, "1123");
        assert_eq!(late.business_date, "2026-11-23");
    }
}
