//! The site under test and a minimal browser.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kassa_auth::notify::{MailFileNotifier, Notifier};
use kassa_auth::{hash_digit_code, hash_password, Auth, AuthShared, Clock, HashPool, RefusalLog, SystemClock};
use kassa_crypto::MasterKey;
use kassa_store::testing::TestDb;
use kassa_store::*;
use kassa_web::{Services, WebState};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const MID: &str = "898100000000001";
pub const OTHER_MID: &str = "898100000000002";
pub const TID: &str = "10000003";
/// The password of every seeded back-office user (already changed: no forced change).
pub const PASSWORD: &str = "Kassa-Web-Test-2026";
/// The initial password of `fresh`, who must change it at first sign-in.
pub const INITIAL: &str = "Kassa-Demo-2026!";

/// The seeded users: (username, role).
pub const USERS: &[(&str, &str)] = &[
    ("admin", "institution_admin"),
    ("reviewer", "institution_reviewer"),
    ("owner", "merchant_owner"),
    ("staff", "merchant_staff"),
];

/// The site: its address, store and services.
pub struct Site {
    pub addr: SocketAddr,
    pub store: Store,
    pub auth: Auth,
    pub outbox: std::path::PathBuf,
    /// Where the backups page writes (the host's `<data dir>/backups`).
    pub backups: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A browser's session: the cookie and the CSRF token read from a page.
#[derive(Clone, Debug)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

/// An answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Page {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }

    /// Where a redirect goes.
    pub fn location(&self) -> Option<String> {
        self.header("location")
    }

    /// The value of the hidden `csrf` field of the page.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        Some(self.body[at..].split('"').next()?.to_owned())
    }
}

impl Site {
    /// The demo shape and one user of each role, served on port 0.
    pub async fn start(db: &TestDb) -> Site {
        Site::start_with(db, None).await
    }

    /// [`Site::start`] with a card side for the pages (card tests, new terminals).
    pub async fn start_with(db: &TestDb, card_probe: Option<Arc<dyn kassa_web::card_probe::CardProbe>>) -> Site {
        let store = db.store.clone();
        let master = MasterKey::generate(&mut rand::rngs::OsRng);
        let pepper = master.pepper();
        let credential = |hash: String, must_change: bool| CredentialRecord {
            password_hash: hash,
            password_history: vec![],
            must_change_password: must_change,
            failures: 0,
            locked_until_ms: None,
            password_changed_ms: SystemClock.now_ms(),
            enabled: true,
        };
        let mut ops = Vec::new();
        for merchant_id in [MID, OTHER_MID] {
            let mut fee_rates = BTreeMap::new();
            fee_rates.insert("card".to_owned(), 60);
            ops.push(WriteOp::PutMerchant(MerchantRecord {
                merchant_id: merchant_id.into(),
                name: "Demo Coffee 演示咖啡".into(),
                mcc: "5812".into(),
                currency: "CNY".into(),
                fee_rates,
                created_at_ms: 1,
            }));
        }
        ops.push(WriteOp::PutTerminal(TerminalRecord {
            terminal_id: TID.into(),
            merchant_id: MID.into(),
            refund_password_mode: RefundPasswordMode::Host,
            mac_algorithm: "x919".into(),
            tmk_sealed: vec![1],
            tms_secret_sealed: vec![2],
            open_batch: 1,
            status: "active".into(),
            created_at_ms: 1,
        }));
        ops.push(WriteOp::PutMerchantSecret(MerchantSecretRecord {
            merchant_id: MID.into(),
            kind: MerchantSecretKind::RefundPassword,
            secret_hash: hash_digit_code(&pepper, "123456").unwrap(),
            is_default: true,
            history: vec![],
            changed_at_ms: 1,
        }));
        ops.push(WriteOp::PutSetting {
            scope: MID.into(),
            name: kassa_auth::reset::RESET_CONTACT_SETTING.into(),
            value: json!("owner@demo-coffee.example"),
            at_ms: 1,
        });
        for (code, role, password) in
            [("00", "supervisor", "123456"), ("01", "operator", "0000"), ("02", "operator", "0000")]
        {
            ops.push(WriteOp::PutOperator(OperatorRecord {
                merchant_id: MID.into(),
                operator_code: code.into(),
                role: role.into(),
                credential: credential(hash_digit_code(&pepper, password).unwrap(), true),
            }));
        }
        let hash = hash_password(PASSWORD).unwrap();
        for (username, role) in USERS {
            let merchant_id = role.starts_with("merchant").then(|| MID.to_owned());
            ops.push(WriteOp::PutBackofficeUser(BackofficeUserRecord {
                username: (*username).into(),
                role: (*role).into(),
                merchant_id,
                credential: credential(hash.clone(), false),
            }));
        }
        ops.push(WriteOp::PutBackofficeUser(BackofficeUserRecord {
            username: "fresh".into(),
            role: "merchant_owner".into(),
            merchant_id: Some(MID.into()),
            credential: credential(hash_password(INITIAL).unwrap(), true),
        }));
        store.commit(WriteUnit::ops(ops)).await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.txt");
        let notifier: Arc<dyn Notifier> = Arc::new(MailFileNotifier::new(outbox.clone()));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let shared = AuthShared {
            hashing: HashPool::for_this_machine(),
            refusals: RefusalLog::new(store.clone(), clock.clone()),
        };
        let auth = Auth::new(store.clone(), pepper, clock.clone(), shared);
        let services = Services { card_probe, ..services(&store, clock) };
        let state = WebState::new(auth.clone(), store.clone(), notifier, services);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backups = dir.path().join("backups");
        let app = kassa_web::pages::backups::with_backups(kassa_web::router(state), backups.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Site { addr, store, auth, outbox, backups, _dir: dir }
    }

    /// Sends a request as a browser of this site would.
    pub async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Page {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |at| at + 4);
        let head = String::from_utf8_lossy(&response[..split]).trim_end().to_owned();
        let status = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
        let raw_body = &response[split..];
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(raw_body)
        } else {
            raw_body.to_vec()
        };
        let body = String::from_utf8(body).expect("pages are UTF-8");
        Page { status, head, body }
    }

    /// GET as `browser` (or signed out).
    pub async fn get(&self, browser: Option<&Browser>, path: &str) -> Page {
        let cookie = browser.map(|b| b.cookie.clone()).unwrap_or_default();
        let mut headers = vec![("Sec-Fetch-Site", "same-origin")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        self.raw("GET", path, &headers, "").await
    }

    /// POSTs a form as `browser` (the CSRF field added), from a page of this site.
    pub async fn post(&self, browser: Option<&Browser>, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if let Some(browser) = browser {
            all.push(("csrf", browser.csrf.as_str()));
        }
        let body = serde_urlencoded::to_string(&all).unwrap();
        let origin = format!("http://{}", self.addr);
        let cookie = browser.map(|b| b.cookie.clone()).unwrap_or_default();
        let mut headers = vec![
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", origin.as_str()),
        ];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        self.raw("POST", path, &headers, &body).await
    }

    /// Signs in `username` with `password` and reads the CSRF token from the landing page.
    pub async fn sign_in_with(&self, username: &str, password: &str) -> Browser {
        let page = self.post(None, "/login", &[("username", username), ("password", password), ("next", "/")]).await;
        assert_eq!(page.status, 303, "sign-in of {username}: {}", page.body);
        let set_cookie = page.header("set-cookie").expect("a session cookie");
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let mut browser = Browser { cookie, csrf: String::new() };
        let landing = self.get(Some(&browser), "/password").await;
        browser.csrf = landing.csrf().expect("a CSRF field on the password page");
        browser
    }

    /// Signs in a seeded user.
    pub async fn sign_in(&self, username: &str) -> Browser {
        self.sign_in_with(username, PASSWORD).await
    }
}

/// The services behind the pages, without wallets.
fn services(store: &Store, clock: Arc<dyn Clock>) -> Services {
    Services {
        refunds: Some(kassa_refund::RefundService::new(store.clone(), None, clock.clone(), Default::default())),
        reconciler: Some(kassa_recon::Reconciler::new(store.clone(), None, clock.clone())),
        corrections: Some(kassa_recon::corrections::Corrections::new(store.clone(), None, clock.clone())),
        payouts: Some(kassa_payout::Payouts::new(store.clone(), clock, Default::default())),
        qr: None,
        card_probe: None,
    }
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16) else { break };
        let after = &rest[end + 2..];
        if size == 0 || after.len() < size {
            break;
        }
        out.extend_from_slice(&after[..size]);
        rest = after[size..].strip_prefix(b"\r\n").unwrap_or(&after[size..]);
    }
    out
}
