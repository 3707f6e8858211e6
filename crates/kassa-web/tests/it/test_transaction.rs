//! The test transaction (/test-transaction): who may run one, on which terminals, what the page
//! says when a path is not available on the host, and a card test through a card side that
//! records what a gateway would (the real one runs against `kassa up` in the kassa crate's
//! `web_card` test and in the browser walk): the form redirects to the run's own page, a reload
//! shows it again without running it again, the steps, the transactions and the journal entries
//! read back, in both languages, and the marked sale left out of deposit volumes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kassa_store::terminals_admin::mark_card_test;
use kassa_store::testing::TestDb;
use kassa_store::{CardIdentity, Store, WriteUnit};
use kassa_web::card_probe::{
    CardProbe, CardRequestRef, CardRun, CardStep, CardStepKind, CardTest, ProbeError, ProbeFuture, TerminalSecrets,
    TestCard,
};
use zeroize::Zeroizing;

use crate::harness::{Site, MID, TID};
use crate::transactions::card_sale;

/// The STAN the fake gateway gives a test's sale.
const SALE_STAN: u32 = 500_001;

/// A card side that records a sale (approved, or declined for the expired card) as the gateway
/// would, marks it as the real one does, and reports the steps a terminal would see; or refuses
/// with `refusal` when set.
#[derive(Debug)]
pub struct FakeProbe {
    store: Store,
    pub runs: AtomicUsize,
    pub refusal: Mutex<Option<ProbeError>>,
}

impl FakeProbe {
    pub fn new(store: &Store) -> Arc<FakeProbe> {
        Arc::new(FakeProbe { store: store.clone(), runs: AtomicUsize::new(0), refusal: Mutex::new(None) })
    }

    async fn run(&self, test: &CardTest) -> Result<CardRun, ProbeError> {
        if let Some(refusal) = self.refusal.lock().unwrap().take() {
            return Err(refusal);
        }
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        let stan = SALE_STAN + u32::try_from(run).unwrap() * 2;
        let approved = test.card != TestCard::Expired;
        let status = if approved { "approved" } else { "declined" };
        let rrn = format!("{stan:012}");
        card_sale(&self.store, MID, stan, i64::try_from(test.amount_minor).unwrap(), status, &rrn, 1).await;
        let identity = CardIdentity::new(TID, 1, stan, "020").unwrap();
        self.store.commit(WriteUnit::ops(vec![mark_card_test(&identity, &test.run_id, 2)])).await.unwrap();
        let answered = |kind, code: &str| {
            let mut step = CardStep::new(kind, 7);
            step.mti = if kind == CardStepKind::Reversal { "0400" } else { "0200" }.into();
            step.code = Some(code.into());
            step.meaning =
                Some((if code == "00" { "approved" } else { "expired card" }.into(), "交易成功或过期卡".into()));
            step.pan_masked = Some("622202*********0128".into());
            step.rrn = Some(rrn.clone());
            step.batch = Some(1);
            step.stan = Some(stan);
            step.mac_verified = true;
            step
        };
        let mut sign_in = CardStep::new(CardStepKind::SignIn, 3);
        sign_in.code = Some("00".into());
        sign_in.batch = Some(1);
        let mut steps = vec![CardStep::new(CardStepKind::Keys, 1), sign_in];
        if approved {
            steps.push(answered(CardStepKind::Sale, "00"));
            steps.push(answered(CardStepKind::Reversal, "00"));
        } else {
            steps.push(answered(CardStepKind::Sale, "54"));
        }
        Ok(CardRun { steps, sale: Some(CardRequestRef { batch: 1, stan }), void: None })
    }
}

impl CardProbe for FakeProbe {
    fn card_test<'a>(&'a self, test: &'a CardTest) -> ProbeFuture<'a, Result<CardRun, ProbeError>> {
        Box::pin(self.run(test))
    }

    fn new_terminal_secrets(&self, terminal_id: &str) -> Result<TerminalSecrets, ProbeError> {
        Ok(TerminalSecrets {
            tmk_hex: Zeroizing::new("00112233445566778899AABBCCDDEEFF".into()),
            tmk_check_value: "ABC123".into(),
            tms_credential: Zeroizing::new(format!("{terminal_id}{}", "c".repeat(56))),
            tmk_sealed: vec![7; 40],
            tms_sealed: vec![8; 40],
        })
    }
}

async fn owners_and_admins_run_tests_on_their_terminals(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), "/test-transaction").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("<option value=\"{TID}\">")), "{}", page.body);
    assert!(page.body.contains("281234567890123401") && page.body.contains("622202*********0177"));
    // Neither path is available on this host: the page says so, a run is refused with why.
    assert!(page.body.contains("QR payments are not configured on this host"), "{}", page.body);
    assert!(page.body.contains("Card tests are not available on this host"), "{}", page.body);
    let run = [("terminal_id", TID), ("kind", "qr"), ("amount", "0.01"), ("code", "281234567890123401")];
    let answer = site.post(Some(&owner), "/test-transaction", &run).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("QR payments are not configured on this host"), "{}", answer.body);
    let card = [("terminal_id", TID), ("kind", "card"), ("card", "approved"), ("amount", "1.00")];
    let answer = site.post(Some(&owner), "/test-transaction", &card).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("Card tests are not available on this host"), "{}", answer.body);

    for (field, value) in [("amount", "100.01"), ("amount", "0"), ("code", "999999999999999999"), ("kind", "cash")] {
        let mut bad = run.to_vec();
        bad.retain(|(name, _)| *name != field);
        bad.push((field, value));
        let answer = site.post(Some(&owner), "/test-transaction", &bad).await;
        assert_eq!(answer.status, 400, "{field}={value}");
        assert!(!answer.body.contains("not configured"), "{field}={value}: the form is checked first");
    }
    // Another merchant's terminal is not the owner's to test.
    let other = site
        .post(
            Some(&owner),
            "/test-transaction",
            &[("merchant", "898100000000002"), ("terminal_id", "99999999"), ("kind", "qr"), ("amount", "0.01")],
        )
        .await;
    assert_eq!(other.status, 400);

    for user in ["staff", "reviewer"] {
        let browser = site.sign_in(user).await;
        assert_eq!(site.get(Some(&browser), "/test-transaction").await.status, 403, "{user}");
        assert_eq!(site.post(Some(&browser), "/test-transaction", &run).await.status, 403, "{user}");
    }
    let admin = site.sign_in("admin").await;
    let choose = site.get(Some(&admin), "/test-transaction").await;
    assert!(choose.body.contains("name=\"merchant\""), "{}", choose.body);
    let chosen = site.get(Some(&admin), "/test-transaction?merchant=898100000000001&lang=zh").await;
    assert!(chosen.body.contains("发起模拟交易") && chosen.body.contains(TID), "{}", chosen.body);
}

async fn a_card_test_redirects_to_its_run_which_a_reload_does_not_repeat(db: &TestDb) {
    let probe = FakeProbe::new(&db.store);
    let site = Site::start_with(db, Some(probe.clone() as Arc<dyn CardProbe>)).await;
    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), "/test-transaction").await;
    assert!(!page.body.contains("Card tests are not available"), "{}", page.body);
    for bad_card in ["", "6222021234567890128"] {
        let form = [("terminal_id", TID), ("kind", "card"), ("card", bad_card), ("amount", "1.00")];
        assert_eq!(site.post(Some(&owner), "/test-transaction", &form).await.status, 400, "{bad_card}");
    }
    assert_eq!(probe.runs.load(Ordering::SeqCst), 0);

    let form = [("terminal_id", TID), ("kind", "card"), ("card", "approved"), ("amount", "1.00")];
    let answer = site.post(Some(&owner), "/test-transaction", &form).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.location().unwrap();
    let run_id = location.strip_prefix("/test-transaction/runs/").unwrap().to_owned();
    assert!(run_id.starts_with(&format!("TEST{TID}")), "{location}");
    assert_eq!(probe.runs.load(Ordering::SeqCst), 1);
    let result = site.get(Some(&owner), &location).await;
    assert_eq!(result.status, 200, "{}", result.body);
    for expected in [
        "Approved 1.00 CNY and cancelled at once",
        "Terminal master key unsealed",
        "Signed in (0800)",
        "Sale (0200)",
        "Reversed (0400)",
        "00 approved",
        "622202*********0128",
        "000000500001",
        "MAC verified",
        "card:10000003:000001:500001:020",
        "Balanced",
        "/transactions/card/",
    ] {
        assert!(result.body.contains(expected), "{expected}: {}", result.body);
    }
    assert!(!result.body.contains("6222021234567890128"), "no full card number");
    // A reload shows the run again; it does not run it again.
    let again = site.get(Some(&owner), &location).await;
    assert_eq!(again.status, 200);
    assert_eq!(probe.runs.load(Ordering::SeqCst), 1);
    let zh = site.get(Some(&owner), &format!("{location}?lang=zh")).await;
    assert!(zh.body.contains("交易成功 1.00 CNY，已立即撤销") && zh.body.contains("签到（0800）"), "{}", zh.body);
    assert!(zh.body.contains("交易成功或过期卡"), "the code's meaning in Chinese: {}", zh.body);

    // Recorded in the audit log with its steps; the terminal's latest contact is the test.
    let audit = site.store.audit.audit_records(0, 1_000).await.unwrap();
    let recorded = audit.iter().find(|r| r.event.action == "test_transaction_run").expect("audited");
    assert_eq!(recorded.event.target, format!("test_transaction:{run_id}"));
    assert_eq!(recorded.event.actor, "user:owner");
    assert_eq!(recorded.event.details["steps"].as_array().unwrap().len(), 4);
    let fleet = site.store.fleet().fleet(Some(MID), 10).await.unwrap();
    assert_eq!(fleet.iter().find(|row| row.terminal_id == TID).unwrap().last_contact_kind.as_deref(), Some("test"));

    // The marked sale stands approved (the fake did not void it) and is still out of the volume;
    // an ordinary sale counts.
    let volume = || site.store.fleet().volume(MID, "CNY", 0, i64::MAX);
    assert_eq!(volume().await.unwrap(), 0);
    card_sale(&site.store, MID, 42, 250, "approved", "000000000042", 3).await;
    assert_eq!(volume().await.unwrap(), 250);

    // A decline is the card's answer, not a failure of the test.
    let expired = [("terminal_id", TID), ("kind", "card"), ("card", "expired"), ("amount", "0.50")];
    let answer = site.post(Some(&owner), "/test-transaction", &expired).await;
    assert_eq!(answer.status, 303);
    let declined = site.get(Some(&owner), &answer.location().unwrap()).await;
    assert!(declined.body.contains("Declined 54") && declined.body.contains("54 expired card"), "{}", declined.body);
    assert!(declined.body.contains("No journal entry"), "{}", declined.body);

    // The card side's refusals are the page's words.
    *probe.refusal.lock().unwrap() = Some(ProbeError::Busy);
    let busy = site.post(Some(&owner), "/test-transaction", &form).await;
    assert_eq!(busy.status, 400);
    assert!(busy.body.contains("Another card test is running"), "{}", busy.body);
    *probe.refusal.lock().unwrap() = Some(ProbeError::NoGateway);
    let none = site.post(Some(&owner), "/test-transaction", &form).await;
    assert!(none.body.contains("no ISO 8583 gateway"), "{}", none.body);

    // Who may see a run: the merchant's owner and the institution admin; nobody else.
    let admin = site.sign_in("admin").await;
    assert_eq!(site.get(Some(&admin), &location).await.status, 200);
    for user in ["staff", "reviewer"] {
        let browser = site.sign_in(user).await;
        assert_eq!(site.get(Some(&browser), &location).await.status, 403, "{user}");
    }
    for missing in ["/test-transaction/runs/TEST1", "/test-transaction/runs/ORDER-1", "/test-transaction/runs/TEST%27x"]
    {
        assert_eq!(site.get(Some(&owner), missing).await.status, 404, "{missing}");
    }
    // An institution admin runs one for a chosen merchant; its page links back there.
    let mut as_admin = form.to_vec();
    as_admin.push(("merchant", MID));
    let answer = site.post(Some(&admin), "/test-transaction", &as_admin).await;
    assert_eq!(answer.status, 303);
    let page = site.get(Some(&admin), &answer.location().unwrap()).await;
    assert!(page.body.contains(&format!("/test-transaction?merchant={MID}")), "{}", page.body);
}

kassa_store::both_backends!(
    owners_and_admins_run_tests_on_their_terminals,
    a_card_test_redirects_to_its_run_which_a_reload_does_not_repeat
);
