//! Calendars without a time-zone database: civil dates and times at a fixed offset from UTC
//! (Asia/Shanghai, Kassa's home zone, keeps UTC+8 all year), and the business day — the civil
//! day at an offset, moved on to the next day after a daily cut-off.
//!
//! Everything here is a pure function of Unix milliseconds: nothing reads a clock. The one
//! calendar of every crate: the gateway's fields 12, 13 and 15, the QR trades' business date,
//! the issuer's expiry check and the wallet simulator's provider days all come from here.

use std::fmt;

const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_MINUTE: i64 = 60_000;
/// Minutes in a day: a cut-off here (or at 0) is midnight, the civil day itself.
pub const MINUTES_PER_DAY: u32 = 24 * 60;
/// Asia/Shanghai's offset east of UTC, minutes (no daylight saving time).
pub const SHANGHAI_UTC_OFFSET_MINUTES: i32 = 8 * 60;
/// The first year a [`CivilDate`] is built for by [`CivilDate::new`] (four digits).
pub const YEAR_MIN: i64 = 1;
/// The last year a [`CivilDate`] is built for by [`CivilDate::new`] (four digits).
pub const YEAR_MAX: i64 = 9999;

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `(year, month, day)` of a day counted from 1970-01-01 (proleptic Gregorian, Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    // Both in range by construction: day 1..=31, month 1..=12.
    let day = u32::try_from(day_of_year - (153 * month_index + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if month_index < 10 { month_index + 3 } else { month_index - 9 }).unwrap_or(1);
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (Howard Hinnant's `days_from_civil`, the inverse).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_march = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * month_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A day of the proleptic Gregorian calendar; always a real date (no 31 April). Written
/// `YYYY-MM-DD` by `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate {
    year: i64,
    month: u32,
    day: u32,
}

impl CivilDate {
    /// The date, when it exists and its year is [`YEAR_MIN`]..=[`YEAR_MAX`].
    pub fn new(year: i64, month: u32, day: u32) -> Option<CivilDate> {
        let real = (YEAR_MIN..=YEAR_MAX).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day);
        real.then_some(CivilDate { year, month, day })
    }

    /// The civil date `offset_minutes` east of UTC at Unix time `unix_ms`.
    pub fn at(unix_ms: i64, offset_minutes: i32) -> CivilDate {
        let local_ms = unix_ms.saturating_add(i64::from(offset_minutes) * MS_PER_MINUTE);
        CivilDate::from_days_since_epoch(local_ms.div_euclid(MS_PER_DAY))
    }

    /// The date `days` after 1970-01-01 (negative: before).
    pub fn from_days_since_epoch(days: i64) -> CivilDate {
        let (year, month, day) = civil_from_days(days);
        CivilDate { year, month, day }
    }

    /// Days since 1970-01-01 (negative: before).
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    /// The day after.
    pub fn next_day(self) -> CivilDate {
        CivilDate::from_days_since_epoch(self.days_since_epoch() + 1)
    }

    /// The year.
    pub fn year(self) -> i64 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// The day of the month, 1..=31.
    pub fn day(self) -> u32 {
        self.day
    }

    /// Reads `YYYY-MM-DD` (exactly: four, two and two digits), a date that exists.
    pub fn parse(text: &str) -> Option<CivilDate> {
        let bytes = text.as_bytes();
        if text.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
            return None;
        }
        CivilDate::from_digits(text.get(..4)?, text.get(5..7)?, text.get(8..10)?)
    }

    /// Reads `YYYYMMDD`, a date that exists.
    pub fn parse_compact(text: &str) -> Option<CivilDate> {
        if text.len() != 8 {
            return None;
        }
        CivilDate::from_digits(text.get(..4)?, text.get(4..6)?, text.get(6..8)?)
    }

    fn from_digits(year: &str, month: &str, day: &str) -> Option<CivilDate> {
        if ![year, month, day].iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        CivilDate::new(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
    }

    /// `YYYYMMDD`.
    pub fn compact(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `MMDD`, as ISO 8583 fields 13 and 15 write it.
    pub fn mmdd(self) -> String {
        format!("{:02}{:02}", self.month, self.day)
    }
}

impl fmt::Display for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A civil date and time in some fixed offset from UTC. Built by [`CivilTime::at`] it is always
/// real; built by hand (a parsed wire time) it is checked by [`CivilTime::unix_ms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Full year, e.g. 2026.
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59.
    pub second: u32,
}

impl CivilTime {
    /// The civil time `offset_minutes` east of UTC at Unix time `unix_ms` (proleptic Gregorian).
    pub fn at(unix_ms: i64, offset_minutes: i32) -> CivilTime {
        let local_ms = unix_ms.saturating_add(i64::from(offset_minutes) * MS_PER_MINUTE);
        let (year, month, day) = civil_from_days(local_ms.div_euclid(MS_PER_DAY));
        let seconds = u32::try_from(local_ms.rem_euclid(MS_PER_DAY) / 1000).unwrap_or(0);
        CivilTime { year, month, day, hour: seconds / 3600, minute: (seconds / 60) % 60, second: seconds % 60 }
    }

    /// Its date, when it is a real one (see [`CivilDate::new`]).
    pub fn date(&self) -> Option<CivilDate> {
        CivilDate::new(self.year, self.month, self.day)
    }

    /// The Unix milliseconds of this civil time `offset_minutes` east of UTC; `None` when it is
    /// no real date and time (31 April, 24:00, a year outside [`YEAR_MIN`]..=[`YEAR_MAX`]).
    pub fn unix_ms(&self, offset_minutes: i32) -> Option<i64> {
        let date = self.date()?;
        if self.hour > 23 || self.minute > 59 || self.second > 59 {
            return None;
        }
        let seconds = date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        Some((seconds - i64::from(offset_minutes) * 60) * 1000)
    }

    /// Minutes since local midnight.
    pub fn minute_of_day(&self) -> u32 {
        self.hour * 60 + self.minute
    }

    /// `YYMM`, as card expiry dates are written.
    pub fn yymm(&self) -> String {
        format!("{:02}{:02}", self.year.rem_euclid(100), self.month)
    }

    /// `hhmmss`, as ISO 8583 field 12 writes it.
    pub fn hhmmss(&self) -> String {
        format!("{:02}{:02}{:02}", self.hour, self.minute, self.second)
    }
}

/// Where a business day lies: the civil day at a fixed offset from UTC (Asia/Shanghai has no
/// daylight saving time), moved on to the next day from a daily cut-off. What is done at or
/// after the cut-off belongs to the next business day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessDay {
    /// Minutes east of UTC (480 for Asia/Shanghai).
    pub utc_offset_minutes: i32,
    /// Minutes after local midnight at which the next business day starts (23:00 = 1380).
    /// `0` and [`MINUTES_PER_DAY`] (or more) are midnight: the business day is the civil day.
    pub cut_off_minutes: u32,
}

impl Default for BusinessDay {
    /// Asia/Shanghai with a 23:00 cut-off, the acquiring host's default.
    fn default() -> Self {
        BusinessDay { utc_offset_minutes: SHANGHAI_UTC_OFFSET_MINUTES, cut_off_minutes: 23 * 60 }
    }
}

impl BusinessDay {
    /// The civil day at `utc_offset_minutes`, with no cut-off (a provider's calendar day).
    pub const fn calendar_day(utc_offset_minutes: i32) -> BusinessDay {
        BusinessDay { utc_offset_minutes, cut_off_minutes: MINUTES_PER_DAY }
    }

    /// The local civil time of `unix_ms`.
    pub fn local_time(&self, unix_ms: i64) -> CivilTime {
        CivilTime::at(unix_ms, self.utc_offset_minutes)
    }

    /// Whether the cut-off moves anything (it is not at midnight).
    fn has_cut_off(&self) -> bool {
        self.cut_off_minutes > 0 && self.cut_off_minutes < MINUTES_PER_DAY
    }

    /// The business date of `unix_ms`: its local date, or the day after from the cut-off on.
    pub fn date_of(&self, unix_ms: i64) -> CivilDate {
        let local = CivilDate::at(unix_ms, self.utc_offset_minutes);
        let after_cut_off = self.has_cut_off() && self.local_time(unix_ms).minute_of_day() >= self.cut_off_minutes;
        if after_cut_off {
            local.next_day()
        } else {
            local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-22T02:48:29Z, 10:48:29 in Shanghai.
    const MORNING_MS: i64 = 1_795_315_709_000;

    #[test]
    fn civil_time_of_known_instants() {
        assert_eq!(
            CivilTime::at(MORNING_MS, 480),
            CivilTime { year: 2026, month: 11, day: 22, hour: 10, minute: 48, second: 29 }
        );
        assert_eq!(CivilTime::at(0, 0), CivilTime { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 });
        // 2024-02-29T23:30:00+08:00 (leap day) from 15:30Z.
        assert_eq!(CivilTime::at(1_709_220_600_000, 480).day, 29);
        assert_eq!(CivilTime::at(1_709_220_600_000, 480).yymm(), "2402");
        assert_eq!(CivilTime::at(MORNING_MS, 480).hhmmss(), "104829");
        assert_eq!(CivilTime::at(-1, 0).year, 1969);
    }

    #[test]
    fn dates_are_real_and_read_exactly() {
        assert_eq!(CivilDate::parse("2024-02-29").map(|d| d.to_string()).as_deref(), Some("2024-02-29"));
        assert_eq!(CivilDate::parse_compact("20240229").map(CivilDate::compact).as_deref(), Some("20240229"));
        for wrong in ["2023-02-29", "2023-04-31", "2023-4-30", "2023-13-01", "+023-01-01", "2023-00-10", "0000-01-01"] {
            assert_eq!(CivilDate::parse(wrong), None, "{wrong}");
        }
        assert_eq!(CivilDate::parse_compact("2023023"), None);
        assert_eq!(CivilDate::new(2100, 2, 29), None, "not a leap year");
        assert!(CivilDate::new(2000, 2, 29).is_some());
        let new_year = CivilDate::new(2025, 12, 31).unwrap_or_else(|| unreachable!());
        assert_eq!(new_year.next_day().to_string(), "2026-01-01");
        assert_eq!(new_year.mmdd(), "1231");
    }

    #[test]
    fn wire_times_are_checked_on_the_way_back() {
        let late = CivilTime { year: 2024, month: 1, day: 1, hour: 24, minute: 0, second: 0 };
        assert_eq!(late.unix_ms(480), None);
        let leap = CivilTime { year: 2023, month: 2, day: 29, hour: 0, minute: 0, second: 0 };
        assert_eq!(leap.unix_ms(480), None);
        assert_eq!(CivilTime::at(MORNING_MS, 480).unix_ms(480), Some(MORNING_MS));
    }

    #[test]
    fn the_cut_off_moves_the_business_day() {
        let day = BusinessDay::default();
        assert_eq!(day.date_of(MORNING_MS).to_string(), "2026-11-22");
        // 15:00Z = 23:00 in Shanghai: the next business day; 22:59:59 is still today.
        let cut_off = MORNING_MS + (12 * 60 + 11) * 60_000 + 31_000;
        assert_eq!(day.local_time(cut_off).hhmmss(), "230000");
        assert_eq!(day.date_of(cut_off).to_string(), "2026-11-23");
        assert_eq!(day.date_of(cut_off - 1_000).to_string(), "2026-11-22");
        // 16:30Z is already the next civil day in Shanghai, with or without a cut-off.
        assert_eq!(day.date_of(1_795_372_200_000).to_string(), "2026-11-23");
        let calendar = BusinessDay::calendar_day(SHANGHAI_UTC_OFFSET_MINUTES);
        assert_eq!(calendar.date_of(cut_off).to_string(), "2026-11-22");
        assert_eq!(calendar.date_of(1_795_372_200_000).to_string(), "2026-11-23");
        // A cut-off at midnight is the civil day.
        let midnight = BusinessDay { utc_offset_minutes: 480, cut_off_minutes: 0 };
        assert_eq!(midnight.date_of(cut_off).to_string(), "2026-11-22");
        // The last day of the year rolls into the next year.
        let eve = CivilTime { year: 2025, month: 12, day: 31, hour: 23, minute: 30, second: 0 };
        let eve_ms = eve.unix_ms(480).unwrap_or_else(|| unreachable!());
        assert_eq!(day.date_of(eve_ms).to_string(), "2026-01-01");
    }

    proptest! {
        #[test]
        fn civil_time_round_trips(unix_s in -62_135_510_400_i64..253_402_214_399, offset in -14 * 60..=14 * 60_i32) {
            let unix_ms = unix_s * 1000;
            let civil = CivilTime::at(unix_ms, offset);
            prop_assert_eq!(civil.unix_ms(offset), Some(unix_ms));
            let date = CivilDate::at(unix_ms, offset);
            prop_assert_eq!(Some(date), civil.date());
            prop_assert_eq!(CivilDate::parse(&date.to_string()), Some(date));
            prop_assert_eq!(CivilDate::from_days_since_epoch(date.days_since_epoch()), date);
            let business = BusinessDay { utc_offset_minutes: offset, cut_off_minutes: 23 * 60 }.date_of(unix_ms);
            prop_assert!(business == date || business == date.next_day());
        }
    }
}
