//! How the pages write money, card numbers and times: one place, so every page says `1,234.56
//! CNY` the same way. Integer minor units in, text out; never a float.

use kassa_domain::{Currency, Money};

/// An amount of `minor` units of `currency` with thousands separators and the currency's
/// decimals: `1,234.56 CNY`, `-0.05 CNY`, `1,000 JPY`. An unknown currency code is written with
/// two decimals (what most codes use) rather than refused: a page shows what the record holds.
pub fn money(minor: i64, currency: &str) -> String {
    let exponent = Currency::from_code(currency).map_or(2, |known| usize::from(known.exponent()));
    format!("{} {currency}", grouped_decimal(minor, exponent))
}

/// `minor` units of `code` as [`Money`]'s own Display writes them, without thousands separators
/// (`5000.00 CNY`); an unknown code shows the minor units with the code, never a float. The
/// reconciliation, correction, payout and fleet pages use this form.
pub fn money_plain(minor: i64, code: &str) -> String {
    match Currency::from_code(code) {
        Ok(currency) => Money::from_minor(minor, currency).to_string(),
        Err(_) => format!("{minor} {code}"),
    }
}

/// [`money`] of a [`Money`].
pub fn money_of(amount: Money) -> String {
    money(amount.minor(), amount.currency().code())
}

/// The amount as a plain decimal string of major units, no separators (`1234.56`, `-0.05`):
/// what a spreadsheet reads in an export.
pub fn decimal(minor: i64, currency: &str) -> String {
    let exponent = Currency::from_code(currency).map_or(2, |known| usize::from(known.exponent()));
    let (sign, whole, fraction) = split(minor, exponent);
    if exponent == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction:0exponent$}")
    }
}

/// `(sign, whole units, fraction)`: on the magnitude as `u64`, so `i64::MIN` has no overflow.
fn split(minor: i64, exponent: usize) -> (&'static str, u64, u64) {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let per_major = u32::try_from(exponent).ok().and_then(|e| 10_u64.checked_pow(e)).unwrap_or(1);
    (sign, magnitude / per_major, magnitude % per_major)
}

fn grouped_decimal(minor: i64, exponent: usize) -> String {
    let (sign, whole, fraction) = split(minor, exponent);
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if exponent == 0 {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction:0exponent$}")
    }
}

/// A card number as pages may show it: first 6 and last 4 digits, `*` between. A value already
/// masked passes unchanged; anything too short to mask is hidden entirely, never shown.
pub fn mask_pan(pan: &str) -> String {
    let chars: Vec<char> = pan.chars().collect();
    if chars.len() < 13 {
        return "*".repeat(chars.len().max(4));
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

/// A count with thousands separators (`1,000,000`).
pub fn count(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let digits = value.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}")
}

/// A share in per mille as a percentage with one decimal (`987` → `98.7%`).
pub fn per_mille(value: i64) -> String {
    format!("{}.{}%", value / 10, (value % 10).abs())
}

/// A Unix-milliseconds instant as `YYYY-MM-DD HH:MM:SS` (UTC), for exports.
pub fn timestamp_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let date = kassa_domain::CivilDate::from_days_since_epoch(days);
    format!("{date} {:02}:{:02}:{:02}", of_day / 3600, (of_day % 3600) / 60, of_day % 60)
}

/// A duration in milliseconds in a short form: `850 ms`, `2.4 s`, `3 min`.
pub fn duration_ms(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{}.{} s", ms / 1_000, (ms % 1_000) / 100)
    } else {
        format!("{} min", ms / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_keeps_the_decimals() {
        assert_eq!(money(123_456, "CNY"), "1,234.56 CNY");
        assert_eq!(money(-5, "CNY"), "-0.05 CNY");
        assert_eq!(money(0, "CNY"), "0.00 CNY");
        assert_eq!(money(100_000_000, "CNY"), "1,000,000.00 CNY");
        assert_eq!(money(1000, "JPY"), "1,000 JPY");
        assert_eq!(money(i64::MIN, "CNY"), "-92,233,720,368,547,758.08 CNY");
        assert_eq!(money(i64::MAX, "CNY"), "92,233,720,368,547,758.07 CNY");
    }

    #[test]
    fn decimals_for_exports_have_no_separators() {
        assert_eq!(decimal(123_456, "CNY"), "1234.56");
        assert_eq!(decimal(-5, "CNY"), "-0.05");
        assert_eq!(decimal(7, "JPY"), "7");
    }

    #[test]
    fn pans_show_six_and_four() {
        assert_eq!(mask_pan("6222021234560128"), "622202******0128");
        assert_eq!(mask_pan("622202******0128"), "622202******0128");
        assert_eq!(mask_pan("1234"), "****");
        assert!(!mask_pan("123456789012").contains('1'));
    }

    #[test]
    fn counts_shares_and_times() {
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(-12), "-12");
        assert_eq!(per_mille(987), "98.7%");
        assert_eq!(timestamp_ms(86_400_000 + 3_661_000), "1970-01-02 01:01:01");
        assert_eq!(duration_ms(2_450), "2.4 s");
    }
}
