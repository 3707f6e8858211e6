//! The wallets' calendar: Asia/Shanghai (UTC+8 all year, no daylight saving time), computed
//! from Unix milliseconds without a time-zone database.

use kassa_domain::clock::CivilTime;

/// Asia/Shanghai's offset east of UTC, minutes.
pub const SHANGHAI_OFFSET_MINUTES: i32 = 8 * 60;

fn civil(unix_ms: i64) -> CivilTime {
    CivilTime::at(unix_ms, SHANGHAI_OFFSET_MINUTES)
}

/// The business day of `unix_ms`: `YYYY-MM-DD`.
pub fn business_day(unix_ms: i64) -> String {
    let t = civil(unix_ms);
    format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
}

/// Alipay's `yyyy-MM-dd HH:mm:ss`.
pub fn alipay_time(unix_ms: i64) -> String {
    let t = civil(unix_ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// WeChat's `yyyyMMddHHmmss`.
pub fn wechat_time(unix_ms: i64) -> String {
    let t = civil(unix_ms);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// `YYYYMMDD` of the business day of `unix_ms` (the date inside trade numbers).
pub fn compact_day(unix_ms: i64) -> String {
    let t = civil(unix_ms);
    format!("{:04}{:02}{:02}", t.year, t.month, t.day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Reads a business day `YYYY-MM-DD` (or `YYYYMMDD` when `compact`), checked against the
/// calendar; answers it as `YYYY-MM-DD`.
pub fn parse_day(text: &str, compact: bool) -> Option<String> {
    let (year, month, day) = if compact {
        if text.len() != 8 {
            return None;
        }
        (text.get(..4)?, text.get(4..6)?, text.get(6..8)?)
    } else {
        if text.len() != 10 || text.as_bytes().get(4) != Some(&b'-') || text.as_bytes().get(7) != Some(&b'-') {
            return None;
        }
        (text.get(..4)?, text.get(5..7)?, text.get(8..10)?)
    };
    if ![year, month, day].iter().all(|part| part.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (year, month, day): (i64, u32, u32) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    // A date that does not exist (31 April) comes back as another day.
    let noon_ms = days_from_civil(year, month, day) * 86_400_000 + 4 * 3_600_000;
    let canonical = format!("{year:04}-{month:02}-{day:02}");
    (business_day(noon_ms) == canonical).then_some(canonical)
}

/// Reads WeChat's `yyyyMMddHHmmss` (Shanghai) as Unix milliseconds.
pub fn parse_wechat_time(text: &str) -> Option<i64> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day = parse_day(text.get(..8)?, true)?;
    let (hour, minute, second): (i64, i64, i64) =
        (text.get(8..10)?.parse().ok()?, text.get(10..12)?.parse().ok()?, text.get(12..14)?.parse().ok()?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (year, month, dom): (i64, u32, u32) =
        (day.get(..4)?.parse().ok()?, day.get(5..7)?.parse().ok()?, day.get(8..10)?.parse().ok()?);
    let local_s = days_from_civil(year, month, dom) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local_s - i64::from(SHANGHAI_OFFSET_MINUTES) * 60) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_calendar() {
        // 2026-11-22T02:48:29Z is 10:48:29 in Shanghai; 16:30Z is already the next day there.
        assert_eq!(alipay_time(1_795_315_709_000), "2026-11-22 10:48:29");
        assert_eq!(wechat_time(1_795_315_709_000), "20261122104829");
        assert_eq!(business_day(1_795_315_709_000), "2026-11-22");
        assert_eq!(business_day(1_795_372_200_000), "2026-11-23");
        assert_eq!(compact_day(1_795_315_709_000), "20261122");
        assert_eq!(parse_wechat_time("20261122104829"), Some(1_795_315_709_000));
    }

    #[test]
    fn days_are_checked() {
        assert_eq!(parse_day("2024-02-29", false).as_deref(), Some("2024-02-29"));
        assert_eq!(parse_day("20240229", true).as_deref(), Some("2024-02-29"));
        assert_eq!(parse_day("2023-02-29", false), None);
        assert_eq!(parse_day("2023-04-31", false), None);
        assert_eq!(parse_day("2023-4-30", false), None);
        assert_eq!(parse_day("2023-13-01", false), None);
        assert_eq!(parse_day("+023-01-01", false), None);
        assert_eq!(parse_wechat_time("20261122246000"), None);
    }
}
