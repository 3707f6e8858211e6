//! Merchant payouts and settlement reports (结算).
