//! The one clock every crate is given: injected, so lockouts, expiries, business days and
//! signatures are deterministic in tests.
//!
//! The domain's own functions never read it; they take time as arguments (e.g.
//! `LockoutState::after_failure(now, …)`). [`SystemClock`] is the only place in Kassa that reads
//! the wall clock; [`CivilTime`] is pure calendar arithmetic.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now_ms)))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A civil date and time in some fixed offset from UTC.
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

const MS_PER_DAY: i64 = 86_400_000;

impl CivilTime {
    /// The civil time `offset_minutes` east of UTC at Unix time `unix_ms` (proleptic Gregorian,
    /// Howard Hinnant's `civil_from_days`).
    pub fn at(unix_ms: i64, offset_minutes: i32) -> CivilTime {
        let local_ms = unix_ms + i64::from(offset_minutes) * 60_000;
        let days = local_ms.div_euclid(MS_PER_DAY);
        let ms_of_day = local_ms.rem_euclid(MS_PER_DAY);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
        let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        let seconds = ms_of_day / 1000;
        CivilTime {
            year,
            month,
            day,
            hour: (seconds / 3600) as u32,
            minute: ((seconds / 60) % 60) as u32,
            second: (seconds % 60) as u32,
        }
    }

    /// `YYMM`, as card expiry dates are written.
    pub fn yymm(&self) -> String {
        format!("{:02}{:02}", self.year.rem_euclid(100), self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_of_known_instants() {
        // 2026-11-22T02:48:29Z is 10:48:29 in Shanghai (UTC+8).
        let instant = 1_795_315_709_000;
        assert_eq!(
            CivilTime::at(instant, 480),
            CivilTime { year: 2026, month: 11, day: 22, hour: 10, minute: 48, second: 29 }
        );
        assert_eq!(CivilTime::at(0, 0), CivilTime { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 });
        // 2024-02-29T23:30:00+08:00 (leap day) from 15:30Z.
        assert_eq!(CivilTime::at(1_709_220_600_000, 480).day, 29);
        assert_eq!(CivilTime::at(1_709_220_600_000, 480).yymm(), "2402");
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let clock = ManualClock::new(5);
        clock.advance_ms(10);
        assert_eq!(clock.now_ms(), 15);
    }
}
