//! The terminal fleet (/terminals): what the host heard from each terminal, its health, and
//! whether a parameter change has reached it.

use kassa_store::fleet::{record_contact, Contact};
use kassa_store::testing::TestDb;
use kassa_store::{WriteOp, WriteUnit};
use serde_json::json;

use crate::harness::{Site, MID, TID};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn a_silent_terminal_shows_before_the_merchant_calls(db: &TestDb) {
    let site = Site::start(db).await;
    let admin = site.sign_in("admin").await;
    let page = site.get(Some(&admin), "/terminals").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(TID) && page.body.contains("Never heard"), "{}", page.body);
    assert!(page.body.contains("Never downloaded"));

    // TMS heard it download its parameters: version, software and what waits on it.
    let at = now_ms();
    let contact = Contact {
        terminal_id: TID.into(),
        at_ms: at,
        kind: "parameters",
        software_version: Some("kassa-terminal 0.9.1".into()),
        parameters_version: Some("3f2a9c01d4e5b6a7".into()),
        unsent_offline: Some(2),
        unsent_reversals: Some(0),
    };
    site.store.commit(WriteUnit::ops(vec![record_contact(&contact)])).await.unwrap();
    let page = site.get(Some(&admin), "/terminals").await;
    assert!(page.body.contains("kassa-terminal 0.9.1") && page.body.contains("3f2a9c01d4e5b6a7"), "{}", page.body);
    assert!(page.body.contains("2 offline sales, 0 reversals"), "{}", page.body);
    assert!(page.body.contains("Items waiting"), "two offline sales wait: {}", page.body);
    assert!(page.body.contains(">Current<"), "{}", page.body);

    // An echo test later keeps what the download reported and clears nothing.
    let echo = Contact {
        kind: "echo",
        at_ms: at + 1,
        software_version: None,
        parameters_version: None,
        unsent_offline: Some(0),
        ..contact.clone()
    };
    site.store.commit(WriteUnit::ops(vec![record_contact(&echo)])).await.unwrap();
    // An older contact arriving late changes nothing.
    let late = Contact { kind: "sign_in", at_ms: at - 60_000, ..echo.clone() };
    site.store.commit(WriteUnit::ops(vec![record_contact(&late)])).await.unwrap();
    let rows = site.store.fleet().fleet(Some(MID), 10).await.unwrap();
    let row = rows.iter().find(|r| r.terminal_id == TID).unwrap();
    assert_eq!(row.software_version.as_deref(), Some("kassa-terminal 0.9.1"));
    assert_eq!((row.last_contact_kind.as_deref(), row.last_echo_ms), (Some("echo"), Some(at + 1)));
    assert_eq!(row.unsent_offline, Some(0));
    let page = site.get(Some(&admin), "/terminals?lang=zh").await;
    assert!(page.body.contains("终端管理") && page.body.contains("正常"), "{}", page.body);

    // A parameter change after the download: the terminal gets it at its next contact.
    site.store
        .commit(WriteUnit::ops(vec![WriteOp::PutSetting {
            scope: MID.into(),
            name: "terminal_parameters".into(),
            value: json!({"offline_floor_limit_minor": 30000}),
            at_ms: at + 10,
        }]))
        .await
        .unwrap();
    let page = site.get(Some(&admin), "/terminals?lang=en").await;
    assert!(page.body.contains("Changed since: arrives at next contact"), "{}", page.body);
}

async fn merchant_users_see_only_their_terminals(db: &TestDb) {
    let site = Site::start(db).await;
    for user in ["owner", "staff"] {
        let browser = site.sign_in(user).await;
        let page = site.get(Some(&browser), "/terminals?merchant=898100000000002").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains(TID), "{}", page.body);
        assert!(!page.body.contains("name=\"merchant\""), "no merchant filter for a merchant user");
    }
    let admin = site.sign_in("admin").await;
    let other = site.get(Some(&admin), "/terminals?merchant=898100000000002").await;
    assert!(!other.body.contains(TID) && other.body.contains("No terminals."), "{}", other.body);
}

kassa_store::both_backends!(a_silent_terminal_shows_before_the_merchant_calls, merchant_users_see_only_their_terminals);
