//! [`WalletCredentials`]: what Kassa needs to talk to each wallet, in the shape the wallet
//! simulator writes to `wallet-credentials.json` and `kassa serve` reads from its configuration.
//!
//! **Invariant**: `Debug` never shows a private key or an API key.

use std::fmt;

use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use serde::{Deserialize, Serialize};

use crate::WireError;

/// The credentials of both wallets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletCredentials {
    /// The Alipay-style wallet.
    pub alipay: AlipayCredentials,
    /// The WeChat-Pay-style wallet.
    pub wechat: WechatCredentials,
}

/// Kassa's app at the Alipay-style wallet.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayCredentials {
    /// The wallet's gateway (`http://127.0.0.1:8085/sim/v1/alipay/gateway.do`).
    pub gateway_url: String,
    /// Kassa's app id at the wallet.
    pub app_id: String,
    /// Kassa's app private key, PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`): signs requests.
    pub app_private_key_pem: String,
    /// Its public half, SPKI PEM (`BEGIN PUBLIC KEY`): the wallet verifies requests with it.
    pub app_public_key_pem: String,
    /// The wallet's platform public key, SPKI PEM: verifies answers and notifications.
    pub wallet_public_key_pem: String,
}

/// Kassa's merchant account at the WeChat-Pay-style wallet.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatCredentials {
    /// The API's base URL (`http://127.0.0.1:8085/sim/v1/wechat`); paths such as
    /// `/pay/micropay` are appended.
    pub api_url: String,
    /// The app id.
    pub appid: String,
    /// The merchant number.
    pub mch_id: String,
    /// The API key (HMAC-SHA256 key of every signature).
    pub api_key: String,
}

impl AlipayCredentials {
    /// Kassa's app key pair (signs requests).
    pub fn app_private_key(&self) -> Result<RsaKeyPair, WireError> {
        Ok(RsaKeyPair::from_pkcs1_pem(&self.app_private_key_pem)?)
    }

    /// Kassa's app public key (the wallet verifies requests with it).
    pub fn app_public_key(&self) -> Result<RsaPublicKey, WireError> {
        Ok(RsaPublicKey::from_spki_pem(&self.app_public_key_pem)?)
    }

    /// The wallet's platform public key (verifies answers and notifications).
    pub fn wallet_public_key(&self) -> Result<RsaPublicKey, WireError> {
        Ok(RsaPublicKey::from_spki_pem(&self.wallet_public_key_pem)?)
    }
}

impl fmt::Debug for WalletCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalletCredentials").field("alipay", &self.alipay).field("wechat", &self.wechat).finish()
    }
}

impl fmt::Debug for AlipayCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayCredentials")
            .field("gateway_url", &self.gateway_url)
            .field("app_id", &self.app_id)
            .field("app_private_key_pem", &"***")
            .field("app_public_key_pem", &"***")
            .field("wallet_public_key_pem", &"***")
            .finish()
    }
}

impl fmt::Debug for WechatCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatCredentials")
            .field("api_url", &self.api_url)
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("api_key", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_through_json_and_debug_shows_no_key() {
        let app = RsaKeyPair::generate().unwrap();
        let wallet = RsaKeyPair::generate().unwrap();
        let credentials = WalletCredentials {
            alipay: AlipayCredentials {
                gateway_url: "http://127.0.0.1:8085/sim/v1/alipay/gateway.do".into(),
                app_id: "2026000000000001".into(),
                app_private_key_pem: app.to_pkcs1_pem().unwrap().to_string(),
                app_public_key_pem: app.public_key().to_spki_pem(),
                wallet_public_key_pem: wallet.public_key().to_spki_pem(),
            },
            wechat: WechatCredentials {
                api_url: "http://127.0.0.1:8085/sim/v1/wechat".into(),
                appid: "wx2026000000000001".into(),
                mch_id: "1900000001".into(),
                api_key: "0123456789abcdef0123456789abcdef".into(),
            },
        };
        let json = serde_json::to_string(&credentials).unwrap();
        assert!(json.contains("\"app_private_key_pem\""));
        let back: WalletCredentials = serde_json::from_str(&json).unwrap();
        assert_eq!(back, credentials);
        assert_eq!(back.alipay.app_private_key().unwrap(), app);
        assert_eq!(back.alipay.app_public_key().unwrap(), app.public_key());
        assert_eq!(back.alipay.wallet_public_key().unwrap(), wallet.public_key());
        let shown = format!("{credentials:?}");
        for secret in ["PRIVATE", "PUBLIC KEY", "0123456789abcdef", "MII"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("api_key: \"***\"") && shown.contains("2026000000000001"), "{shown}");
    }
}
