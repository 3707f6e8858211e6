//! The test transaction (/test-transaction): who may run one, on which terminals, and what the
//! page says when a path is not available on the host (the harness has no wallets; the QR path
//! runs against the wallet simulator in the browser walk under `kassa up`).

use kassa_store::testing::TestDb;

use crate::harness::{Site, TID};

async fn owners_and_admins_run_tests_on_their_terminals(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), "/test-transaction").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("<option value=\"{TID}\">")), "{}", page.body);
    assert!(page.body.contains("281234567890123401"));
    let run = [("terminal_id", TID), ("kind", "qr"), ("amount", "0.01"), ("code", "281234567890123401")];
    let answer = site.post(Some(&owner), "/test-transaction", &run).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("QR payments are not configured on this host"), "{}", answer.body);
    let card = site
        .post(Some(&owner), "/test-transaction", &[("terminal_id", TID), ("kind", "card"), ("amount", "1.00")])
        .await;
    assert!(card.body.contains("Not run") && card.body.contains("Card sale"), "{}", card.body);
    // The run is the terminal's latest contact on the fleet page.
    let fleet = site.get(Some(&owner), "/terminals").await;
    assert!(fleet.body.contains("test transaction"), "{}", fleet.body);

    for (field, value) in [("amount", "100.01"), ("amount", "0"), ("code", "999999999999999999"), ("kind", "cash")] {
        let mut bad = run.to_vec();
        bad.retain(|(name, _)| *name != field);
        bad.push((field, value));
        assert_eq!(site.post(Some(&owner), "/test-transaction", &bad).await.status, 400, "{field}={value}");
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
    let mut as_admin = run.to_vec();
    as_admin.push(("merchant", "898100000000001"));
    assert_eq!(site.post(Some(&admin), "/test-transaction", &as_admin).await.status, 200);
}

kassa_store::both_backends!(owners_and_admins_run_tests_on_their_terminals);
