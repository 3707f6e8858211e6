//! What the two wire formats share: their error, and Shanghai civil time (both providers write
//! times as China Standard Time, UTC+8, without an offset).

use kassa_crypto::rsa_keys::RsaKeyError;
use kassa_domain::clock::CivilTime;

/// Minutes east of UTC of the providers' clocks (Asia/Shanghai has no daylight saving time).
pub const SHANGHAI_OFFSET_MINUTES: i32 = 480;

/// Why a wire message could not be made or read. Messages never quote keys, signatures or
/// payment codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message is larger than its format allows.
    #[error("message too large: {bytes} bytes, at most {bytes_max}")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The format's limit.
        bytes_max: usize,
    },
    /// Not the expected form, JSON or XML, or a field is missing or repeated.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The signature is missing or does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// An amount that is not a positive amount in the wire's notation.
    #[error("invalid amount {0:?}: {1}")]
    Amount(String, &'static str),
    /// A date or time that is not in the wire's notation.
    #[error("invalid time {0:?}")]
    Time(String),
    /// A key could not be read or used.
    #[error("key: {0}")]
    Key(#[from] RsaKeyError),
}

/// The first characters of untrusted text, for an error message.
pub(crate) fn excerpt(text: &str) -> String {
    const EXCERPT_CHARS_MAX: usize = 32;
    text.chars().take(EXCERPT_CHARS_MAX).collect()
}

/// Shanghai civil time of `unix_ms`.
pub(crate) fn shanghai(unix_ms: i64) -> CivilTime {
    CivilTime::at(unix_ms, SHANGHAI_OFFSET_MINUTES)
}

/// Unix milliseconds of a Shanghai civil time; `None` when it is no valid date and time.
pub(crate) fn unix_ms_of_shanghai(time: CivilTime) -> Option<i64> {
    let CivilTime { year, month, day, hour, minute, second } = time;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 || !(1970..=9999).contains(&year) {
        return None;
    }
    // Howard Hinnant's `days_from_civil`, the inverse of `CivilTime::at`.
    let year_march = if month <= 2 { year - 1 } else { year };
    let era = year_march.div_euclid(400);
    let year_of_era = year_march - era * 400;
    let month_march = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * month_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some((seconds - i64::from(SHANGHAI_OFFSET_MINUTES) * 60) * 1000)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A run of exactly `count` ASCII digits as a number.
pub(crate) fn digits(text: &str, count: usize) -> Option<u32> {
    if text.len() != count || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_civil_time_round_trips() {
        for unix_ms in [0, 1_795_315_709_000, 1_709_220_600_000, 4_102_444_799_000] {
            assert_eq!(unix_ms_of_shanghai(shanghai(unix_ms)), Some(unix_ms));
        }
        let leap = CivilTime { year: 2023, month: 2, day: 29, hour: 0, minute: 0, second: 0 };
        assert_eq!(unix_ms_of_shanghai(leap), None);
        let late = CivilTime { year: 2024, month: 1, day: 1, hour: 24, minute: 0, second: 0 };
        assert_eq!(unix_ms_of_shanghai(late), None);
    }
}
