//! The simulator's credentials: generated on the first open, then read back.
//!
//! `wallet-credentials.json` (mode 0600) holds what Kassa's connectors need
//! ([`WalletCredentials`]): Kassa's app key pair at the Alipay-style wallet (the private half as
//! PKCS#1 PEM), the simulator's platform public key, the WeChat-style app id, merchant number and
//! API key. The platform private key stays beside it in `wallet-platform-key.pem` (PKCS#8,
//! mode 0600). The URLs are rewritten from the base URL of each start (its port may change).

use std::path::Path;

use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_wallet::{AlipayCredentials, WalletCredentials, WechatCredentials};
use rand::Rng;

use crate::{SimError, CREDENTIALS_FILE, PLATFORM_KEY_FILE};

/// The keys in use.
#[derive(Debug)]
pub(crate) struct Keys {
    /// The simulator's platform key: signs answers and notifications.
    pub platform: RsaKeyPair,
    /// Kassa's app public key: verifies requests.
    pub app_public: RsaPublicKey,
    /// What the connectors get.
    pub credentials: WalletCredentials,
}

impl Keys {
    /// The WeChat-style API key as HMAC key bytes.
    pub(crate) fn wechat_api_key(&self) -> &[u8] {
        self.credentials.wechat.api_key.as_bytes()
    }

    /// Reads the credentials in `dir`, generating them when there are none.
    pub(crate) fn load_or_create(dir: &Path, base_url: &str) -> Result<Keys, SimError> {
        let credentials_path = dir.join(CREDENTIALS_FILE);
        let key_path = dir.join(PLATFORM_KEY_FILE);
        let invalid = |what: &str, error: String| SimError::Credentials(format!("{what}: {error}"));
        let (platform, mut credentials) = if credentials_path.exists() && key_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path)
                .map_err(|error| SimError::Io(format!("{}: {error}", key_path.display())))?;
            let platform = RsaKeyPair::from_pkcs8_pem(&key_pem)
                .map_err(|error| invalid(&key_path.display().to_string(), error.to_string()))?;
            let json = std::fs::read(&credentials_path)
                .map_err(|error| SimError::Io(format!("{}: {error}", credentials_path.display())))?;
            let credentials: WalletCredentials = serde_json::from_slice(&json)
                .map_err(|error| invalid(&credentials_path.display().to_string(), error.to_string()))?;
            if credentials.alipay.wallet_public_key().ok() != Some(platform.public_key()) {
                return Err(invalid(
                    &credentials_path.display().to_string(),
                    format!("its wallet key is not the one in {PLATFORM_KEY_FILE}"),
                ));
            }
            (platform, credentials)
        } else {
            let (platform, credentials) = generate(base_url)?;
            write_private(&key_path, platform.to_pkcs8_pem().as_bytes())?;
            (platform, credentials)
        };
        let urls = urls(base_url);
        let rewrite = credentials.alipay.gateway_url != urls.0 || credentials.wechat.api_url != urls.1;
        credentials.alipay.gateway_url = urls.0;
        credentials.wechat.api_url = urls.1;
        if rewrite || !credentials_path.exists() {
            let json = serde_json::to_vec_pretty(&credentials)
                .map_err(|error| invalid("cannot write the credentials", error.to_string()))?;
            write_private(&credentials_path, &json)?;
        }
        let app_public = credentials
            .alipay
            .app_public_key()
            .map_err(|error| invalid(&credentials_path.display().to_string(), error.to_string()))?;
        Ok(Keys { platform, app_public, credentials })
    }
}

/// The Alipay gateway URL and the WeChat API base URL under `base_url`.
fn urls(base_url: &str) -> (String, String) {
    (format!("{base_url}{}", crate::alipay_api::GATEWAY_PATH), format!("{base_url}{}", crate::wechat_api::API_PREFIX))
}

fn digits(count: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..count).map(|_| char::from(b'0' + rng.gen_range(0..10_u8))).collect()
}

fn generate(base_url: &str) -> Result<(RsaKeyPair, WalletCredentials), SimError> {
    let key_error = |error: kassa_crypto::rsa_keys::RsaKeyError| SimError::Credentials(error.to_string());
    let platform = RsaKeyPair::generate().map_err(key_error)?;
    let app = RsaKeyPair::generate().map_err(key_error)?;
    let (gateway_url, api_url) = urls(base_url);
    let credentials = WalletCredentials {
        alipay: AlipayCredentials {
            gateway_url,
            app_id: format!("2021{}", digits(12)),
            app_private_key_pem: app.to_pkcs1_pem().map_err(key_error)?.to_string(),
            app_public_key_pem: app.public_key().to_spki_pem(),
            wallet_public_key_pem: platform.public_key().to_spki_pem(),
        },
        wechat: WechatCredentials {
            api_url,
            appid: format!("wx{}", crate::engine::random_token(16).to_lowercase()),
            mch_id: format!("19{}", digits(8)),
            api_key: crate::engine::random_token(32),
        },
    };
    Ok((platform, credentials))
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    use std::io::Write as _;
    let io = |error: std::io::Error| SimError::Io(format!("{}: {error}", path.display()));
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io)
}
