//! The Alipay-compatible aggregator gateway, `/gateway.do` (聚合支付).
