//! Text snapshots of the main screens at 80x24, in English and Chinese. No full card number is
//! on any of them (checked on every screen drawn).

use kassa_pos_ui::{Action, App, Effect};
use kassa_terminal::journal::{Kind, NewEntry, Outcome as Answered, State};
use kassa_terminal::outcome::Refusal;
use kassa_terminal::terminal::CardEntry;
use kassa_terminal::{Lang, Outcome, Terminal};
use ratatui::crossterm::event::KeyCode;

use crate::common::*;

const WIDTH: u16 = 80;
const HEIGHT: u16 = 24;

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "en",
        Lang::Zh => "zh",
    }
}

fn snap(app: &App, screen: &str) {
    let text = screen_text(app, WIDTH, HEIGHT);
    check_snapshot(&format!("{screen}.{}", lang_name(app.lang())), &text);
}

/// Signs operator 01 in as the host would answer (no host: the outcome is given).
fn signed_in(core: &Terminal, lang: Lang) -> App {
    let mut app = app(core, lang);
    type_text(&mut app, core, "010000");
    let Effect::Run(Action::Login { operator, password }) = press(&mut app, core, KeyCode::Enter) else {
        panic!("no login on {}", app.screen_name())
    };
    assert_eq!((operator.as_str(), password.as_str()), ("01", "0000"));
    let answer = Outcome { role: Some("operator".into()), must_change_password: Some(false), ..Outcome::done() };
    app.finish(answer, core);
    assert_eq!(app.screen_name(), "menu:1");
    app
}

fn sale_up_to_the_pin(app: &mut App, core: &Terminal, amount: &str, card: char) {
    type_text(app, core, "1");
    type_text(app, core, amount);
    press(app, core, KeyCode::Enter);
    press(app, core, KeyCode::Enter);
    type_text(app, core, &card.to_string());
    press(app, core, KeyCode::Char('s'));
    assert_eq!(app.screen_name(), "wizard:Sale:Some(Pin { required: false })");
}

fn every_screen(lang: Lang) {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());

    let mut app = app(&core, lang);
    type_text(&mut app, &core, "0100");
    snap(&app, "sign_in");

    let mut app = signed_in(&core, lang);
    snap(&app, "menu");
    press(&mut app, &core, KeyCode::Right);
    snap(&app, "menu_management");
    press(&mut app, &core, KeyCode::Left);

    type_text(&mut app, &core, "1");
    type_text(&mut app, &core, "1234");
    snap(&app, "amount");
    press(&mut app, &core, KeyCode::Enter);
    snap(&app, "confirm");
    press(&mut app, &core, KeyCode::Enter);
    snap(&app, "card_reader");
    press(&mut app, &core, KeyCode::Enter);
    type_text(&mut app, &core, "123456");
    snap(&app, "pin");
    let Effect::Run(Action::Sale { amount_minor: 1234, .. }) = press(&mut app, &core, KeyCode::Enter) else {
        panic!("no sale")
    };
    snap(&app, "processing");
    let approved = Outcome {
        response_code: Some("00".into()),
        rrn: Some("634012000042".into()),
        auth_code: Some("004217".into()),
        stan: Some(7),
        batch: Some(1),
        date: Some("1206".into()),
        amount_minor: Some(1234),
        pan_masked: Some("622202***0128".into()),
        ..Outcome::done()
    };
    app.finish(approved, &core);
    assert!(app.take_bell(), "an approval rings the bell");
    snap(&app, "result_approved");
    press(&mut app, &core, KeyCode::Esc);

    sale_up_to_the_pin(&mut app, &core, "2000", '2');
    let Effect::Run(Action::Sale { amount_minor: 2000, .. }) = press(&mut app, &core, KeyCode::Enter) else {
        panic!("no sale")
    };
    let declined =
        Outcome { stan: Some(8), batch: Some(1), amount_minor: Some(2000), ..Outcome::declined("51", Lang::En) };
    app.finish(declined, &core);
    assert!(!app.take_bell(), "a decline does not ring");
    snap(&app, "result_declined");
    press(&mut app, &core, KeyCode::Esc);

    // The chip card swiped: the core refuses it, and the screen says why in its language.
    sale_up_to_the_pin(&mut app, &core, "300", '6');
    let Effect::Run(Action::Sale { amount_minor: 300, entry: CardEntry::Swipe, .. }) =
        press(&mut app, &core, KeyCode::Enter)
    else {
        panic!("no sale")
    };
    app.finish(Outcome::refused_as(Refusal::InsertChipCard), &core);
    snap(&app, "result_refused");
    let shown = screen_text(&app, WIDTH, HEIGHT);
    let expected = match lang {
        Lang::En => "chip card: insert the card",
        Lang::Zh => "芯片卡请插卡",
    };
    assert!(shown.contains(expected), "{shown}");
    press(&mut app, &core, KeyCode::Esc);

    type_text(&mut app, &core, "3");
    type_text(&mut app, &core, "1000");
    press(&mut app, &core, KeyCode::Enter);
    let Effect::Run(Action::QrShow { amount_minor: 1000 }) = press(&mut app, &core, KeyCode::Enter) else {
        panic!("no merchant QR")
    };
    app.show_qr_code("https://qr.kassa.example/o/M100000011765000000000042");
    snap(&app, "merchant_qr");
    let paid = Outcome {
        amount_minor: Some(1000),
        out_trade_no: Some("M100000011765000000000042".into()),
        trade_no: Some("2026120622001400000000000042".into()),
        wallet: Some("alipay".into()),
        qr_status: Some("paid".into()),
        ..Outcome::done()
    };
    app.finish(paid, &core);
    press(&mut app, &core, KeyCode::Esc);

    journal_rows(&core);
    app.refresh(&core);
    type_text(&mut app, &core, "0");
    snap(&app, "transaction_query");
    press(&mut app, &core, KeyCode::Enter);
    assert_eq!(app.screen_name(), "receipt");
    snap(&app, "receipt_preview");
}

/// An approved card sale and an approved QR payment in the open batch.
fn journal_rows(core: &Terminal) {
    let journal = core.journal_store();
    let qr = journal
        .insert(&NewEntry {
            kind: Some(Kind::QrPay),
            batch: 1,
            amount_minor: 1000,
            operator: "01".into(),
            out_trade_no: "Q100000011765000000000041".into(),
            ..NewEntry::default()
        })
        .unwrap();
    journal.set_qr(qr, State::Approved, "2026120622001400000000000041", "alipay").unwrap();
    let sale = journal
        .insert(&NewEntry {
            kind: Some(Kind::Sale),
            batch: 1,
            stan: 7,
            amount_minor: 1234,
            operator: "01".into(),
            pan: Some("6222021234567890128".into()),
            entry_mode: "021".into(),
            ..NewEntry::default()
        })
        .unwrap();
    let answer = Answered {
        response_code: "00".into(),
        rrn: "634012000042".into(),
        auth_code: "004217".into(),
        date: "1206".into(),
    };
    journal.answer(sale, State::Approved, &answer).unwrap();
}

#[test]
fn main_screens_in_english() {
    every_screen(Lang::En);
}

#[test]
fn main_screens_in_chinese() {
    every_screen(Lang::Zh);
}

#[test]
fn the_language_key_works_on_every_screen_and_redraws_everything() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, Lang::En);
    assert!(screen_text(&app, WIDTH, HEIGHT).contains("Sale"));
    press(&mut app, &core, KeyCode::F(2));
    let chinese = screen_text(&app, WIDTH, HEIGHT);
    assert!(chinese.contains("消费") && chinese.contains("主菜单") && !chinese.contains("Main menu"), "{chinese}");
    // In the middle of a sale (a prompt that takes digits): F2 still switches, the amount stays.
    type_text(&mut app, &core, "1");
    type_text(&mut app, &core, "55");
    press(&mut app, &core, KeyCode::F(2));
    let english = screen_text(&app, WIDTH, HEIGHT);
    assert!(english.contains("Enter the amount") && english.contains("CNY 0.55"), "{english}");
}

#[test]
fn the_screens_fit_larger_terminals_and_keep_every_card_masked() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, Lang::Zh);
    sale_up_to_the_pin(&mut app, &core, "100", '1');
    let text = screen_text(&app, 120, 40);
    assert!(text.contains("622202*********0128"), "{text}");
    // A keyed number is masked while it is typed.
    press(&mut app, &core, KeyCode::Esc);
    type_text(&mut app, &core, "1");
    type_text(&mut app, &core, "100");
    press(&mut app, &core, KeyCode::Enter);
    press(&mut app, &core, KeyCode::Enter);
    press(&mut app, &core, KeyCode::Char('k'));
    type_text(&mut app, &core, "4111111111111111");
    let text = screen_text(&app, 100, 30);
    assert!(text.contains("411111******1111"), "{text}");
}
