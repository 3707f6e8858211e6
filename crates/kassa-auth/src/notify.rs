//! How one-time codes reach people: a [`Notifier`] trait, an SMTP implementation (lettre), an
//! SMS sender through an HTTP gateway ([`HttpSmsNotifier`]), the router that picks one by the
//! recipient's form ([`ByRecipient`]: a phone number in E.164 form goes by SMS when a gateway is
//! configured) and a development sink that appends messages to a mail file — never to the
//! process log, which must not contain a secret.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use zeroize::Zeroizing;

/// A message to one person. `Debug` hides the body, which may carry a code.
#[derive(Clone)]
pub struct Notification {
    /// Names this message and no other (the one-time code's id): a channel that may deliver it
    /// twice passes it on as an idempotency key.
    pub id: String,
    /// Recipient: an e-mail address, or a phone number in E.164 form (`+8613800138000`).
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Text body.
    pub body: Zeroizing<String>,
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("id", &self.id)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a notification was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotifyError {
    /// The recipient or sender address is not an e-mail address.
    #[error("bad address: {0}")]
    Address(String),
    /// The channel refused or could not be reached.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The channel's settings cannot be used (plain SMTP to a remote host, a bad certificate).
    #[error("mail settings: {0}")]
    Settings(String),
    /// The SMS gateway's settings cannot be used (a URL that is not `https://`, no API key).
    #[error("SMS settings: {0}")]
    SmsSettings(String),
}

/// A notification channel (e-mail, SMS, …).
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Delivers `message`; returns once the channel accepted it.
    async fn send(&self, message: &Notification) -> Result<(), NotifyError>;
}

/// Where and how to send e-mail.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// SMTP server host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The From address.
    pub from: String,
    /// Connection timeout, milliseconds.
    pub timeout_ms: u64,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// PEM certificates trusted as roots besides the system's (or `SSL_CERT_FILE`'s): a private
    /// CA of the mail relay.
    pub extra_roots_pem: Vec<String>,
}

/// How long a connection to the SMTP server may take, milliseconds.
pub const SMTP_TIMEOUT_MS: u64 = 10_000;

impl SmtpConfig {
    /// The settings a URL names: `smtps://HOST[:PORT]` (TLS, port 465), `smtp+starttls://HOST[:PORT]`
    /// (STARTTLS required, port 587) or `smtp://HOST[:PORT]` (plain, a relay on this machine
    /// only, port 25). Mail goes out from `from`. Extra trust anchors come from the system's
    /// store or `SSL_CERT_FILE`.
    pub fn from_url(url: &str, from: &str) -> Result<SmtpConfig, NotifyError> {
        let bad = |why: &str| NotifyError::Settings(format!("SMTP URL {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
        let (security, default_port) = match scheme {
            "smtps" => (SmtpSecurity::Tls, 465),
            "smtp+starttls" => (SmtpSecurity::StartTls, 587),
            "smtp" => (SmtpSecurity::PlainLoopback, 25),
            _ => return Err(bad("the scheme is not smtps, smtp+starttls or smtp")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad("give HOST[:PORT] only (no path, query or credentials)"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| bad("the port is not a number"))?)
            }
            _ => (authority, default_port),
        };
        let _: Mailbox = from.parse().map_err(|_| NotifyError::Address(from.to_owned()))?;
        Ok(SmtpConfig {
            host: host.to_owned(),
            port,
            from: from.to_owned(),
            timeout_ms: SMTP_TIMEOUT_MS,
            security,
            extra_roots_pem: Vec::new(),
        })
    }
}

/// How the connection to the SMTP server is protected. One-time codes reset passwords, so they
/// never cross a network in clear text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte ("implicit TLS", usually port 465), certificate and host name
    /// checked.
    Tls,
    /// Plain connection upgraded with STARTTLS before anything is sent (usually port 587);
    /// a server that does not offer it is refused, never used in clear.
    StartTls,
    /// No TLS: only for a relay on this machine (`localhost` or a loopback address), which then
    /// carries the mail on over TLS itself; any other host is refused.
    PlainLoopback,
}

/// E-mail through an SMTP server, over TLS (implicit or STARTTLS, rustls) or in plain text to a
/// relay on this machine only.
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for `config`.
    pub fn new(config: &SmtpConfig) -> Result<SmtpNotifier, NotifyError> {
        let from: Mailbox = config.from.parse().map_err(|_| NotifyError::Address(config.from.clone()))?;
        let tls = match config.security {
            SmtpSecurity::PlainLoopback if is_loopback(&config.host) => Tls::None,
            SmtpSecurity::PlainLoopback => {
                return Err(NotifyError::Settings(format!(
                    "plain SMTP is only allowed to a relay on this machine, not {}",
                    config.host
                )))
            }
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(config)?),
            SmtpSecurity::StartTls => Tls::Required(tls_parameters(config)?),
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
            .port(config.port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_millis(config.timeout_ms)))
            .build();
        Ok(SmtpNotifier { transport, from })
    }
}

/// `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Certificate and host-name checks against the system's roots plus `extra_roots_pem`.
fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, NotifyError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    for pem in &config.extra_roots_pem {
        let root = Certificate::from_pem(pem.as_bytes())
            .map_err(|error| NotifyError::Settings(format!("unusable extra root certificate: {error}")))?;
        builder = builder.add_root_certificate(root);
    }
    builder.build_rustls().map_err(|error| NotifyError::Settings(format!("TLS set-up failed: {error}")))
}

#[async_trait]
impl Notifier for SmtpNotifier {
    async fn send(&self, message: &Notification) -> Result<(), NotifyError> {
        let to: Mailbox = message.to.parse().map_err(|_| NotifyError::Address(message.to.clone()))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.as_str())
            .body(message.body.to_string())
            .map_err(|e| NotifyError::Delivery(e.to_string()))?;
        self.transport.send(email).await.map_err(|e| NotifyError::Delivery(e.to_string()))?;
        Ok(())
    }
}

/// Whether `to` is a phone number in E.164 form: `+`, then 8 to 15 digits, the first not `0`.
pub fn is_phone(to: &str) -> bool {
    to.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
    })
}

/// Where and how to send SMS: an HTTP gateway that takes a JSON POST.
#[derive(Clone)]
pub struct SmsConfig {
    /// The gateway's URL (`https://`, or `http://` to a gateway on this machine only).
    pub url: String,
    /// The gateway's API key, sent in the [`SMS_API_KEY_HEADER`] header.
    pub api_key: Zeroizing<String>,
    /// Longest wait for the gateway's answer to one attempt, connecting included, milliseconds.
    pub timeout_ms: u64,
    /// Extra root certificates (DER) trusted for the gateway besides the system's: tests, a
    /// private CA.
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsConfig")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

/// The header carrying the gateway's API key.
pub const SMS_API_KEY_HEADER: &str = "x-api-key";
/// The header carrying the notification's id, so the gateway sends a repeated request once.
pub const SMS_IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How long one attempt at the SMS gateway may take, milliseconds.
pub const SMS_TIMEOUT_MS: u64 = 10_000;
/// Attempts per message: a second one only after no answer or a 5xx, with the same
/// idempotency key, so the gateway cannot send the text twice.
pub const SMS_ATTEMPTS_MAX: usize = 2;
/// The largest gateway answer read, bytes (it is not used beyond its status).
const SMS_ANSWER_BYTES_MAX: usize = 16 * 1024;

/// SMS through an HTTP gateway: `POST url` with `{"id", "to", "text"}` as JSON, the API key in
/// [`SMS_API_KEY_HEADER`] and the notification's id in [`SMS_IDEMPOTENCY_HEADER`]; a `2xx`
/// answer is accepted delivery. A `4xx` is a refusal (not retried); no answer or a `5xx` is
/// tried once more under the same idempotency key. Neither the text nor the gateway's answer
/// body reaches an error or a log line (the text holds the code; a gateway may echo it).
pub struct HttpSmsNotifier {
    client: kassa_http_client::HttpClient,
    url: hyper::Uri,
    api_key: hyper::header::HeaderValue,
}

impl fmt::Debug for HttpSmsNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSmsNotifier").field("url", &self.url.to_string()).finish_non_exhaustive()
    }
}

impl HttpSmsNotifier {
    /// A sender for `config`: the URL is `https://`, or `http://` to this machine only (the
    /// code never crosses a network in clear text). Needs a Tokio runtime (the client's pool).
    pub fn new(config: &SmsConfig) -> Result<HttpSmsNotifier, NotifyError> {
        let bad = |why: &str| NotifyError::SmsSettings(format!("SMS gateway URL {:?}: {why}", config.url));
        let url: hyper::Uri = config.url.parse().map_err(|_| bad("not a URL"))?;
        let host = url.host().ok_or_else(|| bad("no host"))?;
        match url.scheme_str() {
            Some("https") => {}
            Some("http") if is_loopback(host) => {}
            Some("http") => return Err(bad("plain http is only allowed to a gateway on this machine")),
            _ => return Err(bad("the scheme is not https")),
        }
        if config.api_key.is_empty() {
            return Err(NotifyError::SmsSettings("the SMS gateway's API key is empty".into()));
        }
        let mut api_key = hyper::header::HeaderValue::from_str(config.api_key.as_str())
            .map_err(|_| NotifyError::SmsSettings("the SMS gateway's API key is not a header value".into()))?;
        api_key.set_sensitive(true);
        let client = kassa_http_client::HttpClient::new(kassa_http_client::HttpClientConfig {
            connect_timeout_ms: config.timeout_ms.min(5_000),
            answer_timeout_ms: config.timeout_ms,
            answer_bytes_max: SMS_ANSWER_BYTES_MAX,
            requests_in_flight_max: 16,
            idle_connections_max: 4,
            idle_timeout_ms: 30_000,
            extra_roots: config.extra_roots.clone(),
        })
        .map_err(|error| NotifyError::SmsSettings(error.to_string()))?;
        Ok(HttpSmsNotifier { client, url, api_key })
    }

    fn request(
        &self,
        message: &Notification,
        body: &hyper::body::Bytes,
    ) -> Result<hyper::Request<hyper::body::Bytes>, NotifyError> {
        hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(SMS_API_KEY_HEADER, self.api_key.clone())
            .header(SMS_IDEMPOTENCY_HEADER, message.id.as_str())
            .body(body.clone())
            .map_err(|_| NotifyError::Delivery("the notification id is not a header value".into()))
    }
}

#[async_trait]
impl Notifier for HttpSmsNotifier {
    async fn send(&self, message: &Notification) -> Result<(), NotifyError> {
        if !is_phone(&message.to) {
            return Err(NotifyError::Address(message.to.clone()));
        }
        let text = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({"id": message.id, "to": message.to, "text": &*message.body}))
                .map_err(|error| NotifyError::Delivery(error.to_string()))?,
        );
        let body = hyper::body::Bytes::copy_from_slice(&text);
        let mut last = String::new();
        for _ in 0..SMS_ATTEMPTS_MAX {
            match self.client.send(self.request(message, &body)?).await {
                Ok(answer) if answer.status.is_success() => return Ok(()),
                Ok(answer) if answer.status.is_server_error() => {
                    last = format!("the SMS gateway answered {}", answer.status.as_u16());
                }
                Ok(answer) => {
                    return Err(NotifyError::Delivery(format!("the SMS gateway refused: {}", answer.status.as_u16())))
                }
                Err(error) => last = error.to_string(),
            }
        }
        Err(NotifyError::Delivery(last))
    }
}

/// The notifier of a host: a phone recipient goes by SMS when a gateway is configured,
/// everything else (and phones without a gateway) by mail.
#[derive(Debug, Clone)]
pub struct ByRecipient {
    mail: std::sync::Arc<dyn Notifier>,
    sms: Option<std::sync::Arc<dyn Notifier>>,
}

impl ByRecipient {
    /// Mail through `mail`, phones through `sms` when given.
    pub fn new(mail: std::sync::Arc<dyn Notifier>, sms: Option<std::sync::Arc<dyn Notifier>>) -> ByRecipient {
        ByRecipient { mail, sms }
    }
}

#[async_trait]
impl Notifier for ByRecipient {
    async fn send(&self, message: &Notification) -> Result<(), NotifyError> {
        match &self.sms {
            Some(sms) if is_phone(&message.to) => sms.send(message).await,
            _ => self.mail.send(message).await,
        }
    }
}

/// Development sink: appends each message to a file (e.g. `<data-dir>/outbox.txt`).
#[derive(Debug, Clone)]
pub struct MailFileNotifier {
    path: PathBuf,
}

impl MailFileNotifier {
    /// A sink writing to `path`.
    pub fn new(path: PathBuf) -> MailFileNotifier {
        MailFileNotifier { path }
    }
}

#[async_trait]
impl Notifier for MailFileNotifier {
    async fn send(&self, message: &Notification) -> Result<(), NotifyError> {
        let (path, text) = (
            self.path.clone(),
            Zeroizing::new(format!("To: {}\nSubject: {}\n\n{}\n---\n", message.to, message.subject, &*message.body)),
        );
        tokio::task::spawn_blocking(move || {
            // It holds one-time codes: private to the host's user, like every file it writes. A
            // file an older version created readable by others is made private too.
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            #[cfg(unix)]
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            file.write_all(text.as_bytes())
        })
        .await
        .map_err(|e| NotifyError::Delivery(e.to_string()))?
        .map_err(|e| NotifyError::Delivery(e.to_string()))?;
        tracing::info!(to = %message.to, subject = %message.subject, path = %self.path.display(), "notification written to the mail file");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn the_mail_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.txt");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = Notification {
            id: "c1".into(),
            to: "owner@demo.example".into(),
            subject: "code".into(),
            body: Zeroizing::new("12345678".into()),
        };
        MailFileNotifier::new(path.clone()).send(&message).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let fresh = dir.path().join("fresh.txt");
        MailFileNotifier::new(fresh.clone()).send(&message).await.unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&fresh).unwrap().contains("12345678"));
    }

    #[test]
    fn phones_are_e164() {
        for phone in ["+8613800138000", "+12025550123", "+4930123456"] {
            assert!(is_phone(phone), "{phone}");
        }
        for other in ["8613800138000", "+0123456789", "+86 138 0013 8000", "+1234567", "owner@demo.example", "+"] {
            assert!(!is_phone(other), "{other}");
        }
    }

    #[tokio::test]
    async fn sms_gateways_are_https_or_on_this_machine_and_keyed() {
        let config = |url: &str, key: &str| SmsConfig {
            url: url.into(),
            api_key: Zeroizing::new(key.into()),
            timeout_ms: SMS_TIMEOUT_MS,
            extra_roots: Vec::new(),
        };
        assert!(HttpSmsNotifier::new(&config("https://sms.example/v1/send", "k")).is_ok());
        assert!(HttpSmsNotifier::new(&config("http://127.0.0.1:9/send", "k")).is_ok());
        for bad in ["http://sms.example/send", "ftp://sms.example", "not a url"] {
            assert!(matches!(HttpSmsNotifier::new(&config(bad, "k")), Err(NotifyError::SmsSettings(_))), "{bad}");
        }
        assert!(matches!(HttpSmsNotifier::new(&config("https://sms.example", "")), Err(NotifyError::SmsSettings(_))));
        let debug = format!("{:?}", config("https://sms.example", "secret-key-123"));
        assert!(!debug.contains("secret-key-123"), "{debug}");
    }

    #[test]
    fn smtp_urls_name_the_protection_and_the_port() {
        let of = |url: &str| SmtpConfig::from_url(url, "kassa@example.com").map(|c| (c.host, c.port, c.security));
        assert_eq!(of("smtps://mail.example").unwrap(), ("mail.example".into(), 465, SmtpSecurity::Tls));
        assert_eq!(of("smtps://mail.example:2465/").unwrap(), ("mail.example".into(), 2465, SmtpSecurity::Tls));
        assert_eq!(of("smtp+starttls://relay:587").unwrap(), ("relay".into(), 587, SmtpSecurity::StartTls));
        assert_eq!(of("smtp://localhost").unwrap(), ("localhost".into(), 25, SmtpSecurity::PlainLoopback));
        assert_eq!(of("smtp://[::1]:2525").unwrap(), ("[::1]".into(), 2525, SmtpSecurity::PlainLoopback));
        for bad in ["mail.example", "http://mail.example", "smtps://", "smtps://u:p@mail.example", "smtps://h:x"] {
            assert!(matches!(of(bad), Err(NotifyError::Settings(_))), "{bad}");
        }
        assert!(matches!(SmtpConfig::from_url("smtps://h", "not an address"), Err(NotifyError::Address(_))));
    }
}
