//! The Alipay-style wallet: the OpenAPI wire ([`wire`]).

pub mod wire;
