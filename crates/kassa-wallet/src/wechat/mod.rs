//! The WeChat-Pay-style wallet: the v2 XML wire ([`wire`]).

pub mod wire;
