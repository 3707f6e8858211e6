//! The wallets' calendar: Asia/Shanghai (UTC+8 all year, no daylight saving time). The
//! providers' day is the civil day in Shanghai, with no cut-off: that is the provider's day, not
//! Kassa's business day. Dates and times come from `kassa_domain::calendar`; this module only
//! writes and reads them in each provider's notation.

use kassa_domain::calendar::{BusinessDay, CivilDate, CivilTime, SHANGHAI_UTC_OFFSET_MINUTES};

/// Asia/Shanghai's offset east of UTC, minutes.
pub const SHANGHAI_OFFSET_MINUTES: i32 = SHANGHAI_UTC_OFFSET_MINUTES;

/// The providers' day: Shanghai's calendar day, no cut-off.
const PROVIDER_DAY: BusinessDay = BusinessDay::calendar_day(SHANGHAI_OFFSET_MINUTES);

fn civil(unix_ms: i64) -> CivilTime {
    PROVIDER_DAY.local_time(unix_ms)
}

/// The provider's day of `unix_ms`: `YYYY-MM-DD`.
pub fn business_day(unix_ms: i64) -> String {
    PROVIDER_DAY.date_of(unix_ms).to_string()
}

/// Alipay's `yyyy-MM-dd HH:mm:ss`.
pub fn alipay_time(unix_ms: i64) -> String {
    let t = civil(unix_ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// WeChat's `yyyyMMddHHmmss`.
pub fn wechat_time(unix_ms: i64) -> String {
    let t = civil(unix_ms);
    format!("{}{}", PROVIDER_DAY.date_of(unix_ms).compact(), t.hhmmss())
}

/// `YYYYMMDD` of the provider's day of `unix_ms` (the date inside trade numbers).
pub fn compact_day(unix_ms: i64) -> String {
    PROVIDER_DAY.date_of(unix_ms).compact()
}

/// Reads a day `YYYY-MM-DD` (or `YYYYMMDD` when `compact`), checked against the calendar;
/// answers it as `YYYY-MM-DD`.
pub fn parse_day(text: &str, compact: bool) -> Option<String> {
    let date = if compact { CivilDate::parse_compact(text) } else { CivilDate::parse(text) };
    date.map(|date| date.to_string())
}

/// Reads WeChat's `yyyyMMddHHmmss` (Shanghai) as Unix milliseconds.
pub fn parse_wechat_time(text: &str) -> Option<i64> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = CivilDate::parse_compact(text.get(..8)?)?;
    let time = CivilTime {
        year: date.year(),
        month: date.month(),
        day: date.day(),
        hour: text.get(8..10)?.parse().ok()?,
        minute: text.get(10..12)?.parse().ok()?,
        second: text.get(12..14)?.parse().ok()?,
    };
    time.unix_ms(SHANGHAI_OFFSET_MINUTES)
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
        // 23:30 in Shanghai is still the provider's day: no cut-off, unlike Kassa's business day.
        let late_evening = 1_795_315_709_000 + (12 * 60 + 41) * 60_000 + 31_000;
        assert_eq!(alipay_time(late_evening), "2026-11-22 23:30:00");
        assert_eq!(business_day(late_evening), "2026-11-22");
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
