//! Payment channels and merchant fee rates (费率).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::{div_round_half_even, Money, MoneyError};

/// The network a payment travels through. Fees and receivables are kept per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Bank cards through the card issuer connector (UnionPay style).
    Card,
    /// The Alipay-style wallet.
    Alipay,
    /// The WeChat-Pay-style wallet.
    Wechat,
}

impl Channel {
    /// All channels.
    pub const ALL: [Channel; 3] = [Channel::Card, Channel::Alipay, Channel::Wechat];

    /// Stable lower-case name used in storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Card => "card",
            Channel::Alipay => "alipay",
            Channel::Wechat => "wechat",
        }
    }

    /// The channel for a stable name.
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A merchant discount rate in parts per million of the amount: 0.60 % is 6000, 0.38 % is 3800.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct FeeRate(u32);

/// Why a fee rate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fee rate: {0}")]
pub struct FeeRateError(&'static str);

impl FeeRate {
    /// 100 %, in parts per million.
    pub const PPM_MAX: u32 = 1_000_000;

    /// A rate in parts per million (at most 100 %).
    pub fn from_ppm(ppm: u32) -> Result<FeeRate, FeeRateError> {
        if ppm > Self::PPM_MAX {
            return Err(FeeRateError("above 100 %"));
        }
        Ok(FeeRate(ppm))
    }

    /// Parses a percentage with up to four decimals: `"0.60"` (%), `"0.38"`, `"1"`.
    pub fn parse_percent(text: &str) -> Result<FeeRate, FeeRateError> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 3 || fraction.len() > 4 || !digits_ok(whole) || !digits_ok(fraction) {
            return Err(FeeRateError("expected a percentage like 0.60"));
        }
        let number = |s: &str| s.bytes().fold(0_u32, |acc, b| acc * 10 + u32::from(b - b'0'));
        let fraction_ppm = number(fraction) * 10_u32.pow(4 - fraction.len() as u32);
        FeeRate::from_ppm(number(whole) * 10_000 + fraction_ppm)
    }

    /// Parts per million.
    pub fn ppm(self) -> u32 {
        self.0
    }

    /// The fee on `amount`: `amount × rate`, rounded half-even to the minor unit (fen). Never
    /// negative for a non-negative amount, never more than the amount.
    pub fn fee_for(self, amount: Money) -> Result<Money, MoneyError> {
        let product = i128::from(amount.minor()) * i128::from(self.0);
        let fee = div_round_half_even(product, i128::from(Self::PPM_MAX)).ok_or(MoneyError::Overflow)?;
        let fee = i64::try_from(fee).map_err(|_| MoneyError::Overflow)?;
        Ok(Money::from_minor(fee, amount.currency()))
    }

    /// The percentage as text, `0.60`.
    pub fn to_percent_string(self) -> String {
        format!("{}.{:02}", self.0 / 10_000, (self.0 % 10_000) / 100)
    }
}

impl TryFrom<u32> for FeeRate {
    type Error = FeeRateError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        FeeRate::from_ppm(value)
    }
}

impl From<FeeRate> for u32 {
    fn from(value: FeeRate) -> u32 {
        value.0
    }
}

/// The part of `fee` returned by a refund, under docs/reference/demo-data.md: "a refund returns the fee in
/// proportion to the amount refunded (rounded half-even to the fen)".
///
/// Computed cumulatively — `round(fee × (refunded_before + refund) / captured) −
/// round(fee × refunded_before / captured)` — so that several partial refunds of one payment
/// return exactly the whole fee once the whole amount is refunded, never a fen more or less.
pub fn fee_returned_by_refund(
    fee: Money,
    captured: Money,
    refunded_before: Money,
    refund: Money,
) -> Result<Money, MoneyError> {
    if captured.minor() <= 0 {
        return Ok(Money::zero(fee.currency()));
    }
    let share = |refunded: i64| -> Result<i64, MoneyError> {
        let product = i128::from(fee.minor()) * i128::from(refunded);
        let rounded = div_round_half_even(product, i128::from(captured.minor())).ok_or(MoneyError::Overflow)?;
        i64::try_from(rounded).map_err(|_| MoneyError::Overflow)
    };
    let after = refunded_before.checked_add(refund)?;
    let returned = share(after.minor())? - share(refunded_before.minor())?;
    Ok(Money::from_minor(returned, fee.currency()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CNY)
    }

    #[test]
    fn parses_and_applies_fee_rates() {
        let card = FeeRate::parse_percent("0.60").unwrap();
        assert_eq!(card.ppm(), 6000);
        assert_eq!(FeeRate::parse_percent("0.38").unwrap().ppm(), 3800);
        assert_eq!(FeeRate::parse_percent("1").unwrap().ppm(), 10_000);
        assert!(FeeRate::parse_percent("101").is_err());
        assert!(FeeRate::parse_percent("0.12345").is_err());
        assert!(FeeRate::parse_percent("-1").is_err());
        assert_eq!(card.to_percent_string(), "0.60");
        // 100.00 yuan at 0.60 % is 0.60 yuan.
        assert_eq!(card.fee_for(cny(10_000)), Ok(cny(60)));
        // 12.34 at 0.38 % = 4.6892 fen → 5 fen; 1.25 at 0.60 % = 0.75 fen → 1 fen.
        assert_eq!(FeeRate::from_ppm(3800).unwrap().fee_for(cny(1234)), Ok(cny(5)));
        assert_eq!(card.fee_for(cny(125)), Ok(cny(1)));
        // Exactly half a fen rounds to even: 2.50 at 1 % = 2.5 fen → 2 fen; 3.50 → 4 fen.
        let one = FeeRate::parse_percent("1").unwrap();
        assert_eq!(one.fee_for(cny(250)), Ok(cny(2)));
        assert_eq!(one.fee_for(cny(350)), Ok(cny(4)));
        assert_eq!(Channel::parse("alipay"), Some(Channel::Alipay));
    }

    #[test]
    fn refunds_return_the_fee_in_proportion() {
        // Sale 100.00 with fee 0.60; refund 33.33 then 33.33 then 33.34.
        let fee = cny(60);
        let captured = cny(10_000);
        let first = fee_returned_by_refund(fee, captured, cny(0), cny(3333)).unwrap();
        let second = fee_returned_by_refund(fee, captured, cny(3333), cny(3333)).unwrap();
        let third = fee_returned_by_refund(fee, captured, cny(6666), cny(3334)).unwrap();
        assert_eq!(first.minor() + second.minor() + third.minor(), 60);
        assert_eq!(first, cny(20));
    }

    proptest! {
        #[test]
        fn partial_refunds_return_exactly_the_whole_fee(
            captured in 1_i64..10_000_000,
            ppm in 0_u32..=1_000_000,
            cuts in proptest::collection::vec(1_u32..100, 1..8),
        ) {
            let captured = cny(captured);
            let fee = FeeRate::from_ppm(ppm).unwrap().fee_for(captured).unwrap();
            prop_assert!(fee.minor() >= 0 && fee.minor() <= captured.minor());
            // Split the captured amount into refunds proportional to `cuts`.
            let total_cuts: u64 = cuts.iter().map(|&c| u64::from(c)).sum();
            let mut refunded = cny(0);
            let mut returned = 0_i64;
            for (i, cut) in cuts.iter().enumerate() {
                let part = if i + 1 == cuts.len() {
                    captured.minor() - refunded.minor()
                } else {
                    (i128::from(captured.minor()) * i128::from(*cut) / i128::from(total_cuts)) as i64
                };
                let this = fee_returned_by_refund(fee, captured, refunded, cny(part)).unwrap();
                prop_assert!(this.minor() >= 0);
                returned += this.minor();
                refunded = refunded.checked_add(cny(part)).unwrap();
            }
            prop_assert_eq!(returned, fee.minor());
        }
    }
}
