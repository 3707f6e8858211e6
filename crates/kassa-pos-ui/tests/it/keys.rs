//! Key sequences and the core calls they lead to (no host: the App's effects are checked, and
//! outcomes are handed back as the core would return them).

use std::time::{Duration, Instant};

use kassa_pos_ui::{Action, App, Effect};
use kassa_terminal::{Lang, Outcome, Terminal};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::common::*;

fn signed_in(core: &Terminal, role: &str) -> App {
    let mut app = app(core, Lang::En);
    type_text(&mut app, core, "000000");
    assert!(matches!(press(&mut app, core, KeyCode::Enter), Effect::Run(Action::Login { .. })));
    app.finish(Outcome { role: Some(role.into()), must_change_password: Some(false), ..Outcome::done() }, core);
    app
}

#[test]
fn amounts_shift_in_from_the_right_and_correct_from_the_right() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, "operator");
    type_text(&mut app, &core, "1");
    let mut shown = Vec::new();
    for digit in ['1', '2', '3', '4'] {
        type_text(&mut app, &core, &digit.to_string());
        let text = screen_text(&app, 80, 24);
        shown
            .push(["0.01", "0.12", "1.23", "12.34"].into_iter().find(|amount| text.contains(&format!("CNY {amount}"))));
    }
    assert_eq!(shown, [Some("0.01"), Some("0.12"), Some("1.23"), Some("12.34")]);
    press(&mut app, &core, KeyCode::Backspace);
    assert!(screen_text(&app, 80, 24).contains("CNY 1.23"));
    // Zero is refused at Enter; the prompt stays.
    for _ in 0..3 {
        press(&mut app, &core, KeyCode::Backspace);
    }
    assert_eq!(press(&mut app, &core, KeyCode::Enter), Effect::None);
    assert!(screen_text(&app, 80, 24).contains("more than 0.00"));
}

#[test]
fn a_sale_is_amount_confirm_card_pin_then_one_core_call() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, "operator");
    type_text(&mut app, &core, "11234");
    assert_eq!(press(&mut app, &core, KeyCode::Enter), Effect::None);
    assert!(screen_text(&app, 80, 24).contains("Please confirm"));
    assert_eq!(press(&mut app, &core, KeyCode::Enter), Effect::None);
    type_text(&mut app, &core, "1");
    assert_eq!(press(&mut app, &core, KeyCode::Char('t')), Effect::None, "tapped");
    type_text(&mut app, &core, "123456");
    let text = screen_text(&app, 80, 24);
    assert!(text.contains("******_") && !text.contains("123456"), "the PIN is masked:\n{text}");
    match press(&mut app, &core, KeyCode::Enter) {
        Effect::Run(Action::Sale { amount_minor, pan, entry, pin }) => {
            assert_eq!(amount_minor, 1234);
            assert_eq!(entry, kassa_terminal::terminal::CardEntry::Tap);
            assert_eq!(pan.as_str(), "6222021234567890128");
            assert_eq!(pin.as_deref().map(String::as_str), Some("123456"));
        }
        other => panic!("expected a sale, got {other:?}"),
    }
    assert_eq!(app.screen_name(), "busy:sale");
}

#[test]
fn a_qr_collection_asks_for_the_customers_code() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, "operator");
    type_text(&mut app, &core, "2500");
    press(&mut app, &core, KeyCode::Enter);
    press(&mut app, &core, KeyCode::Enter);
    type_text(&mut app, &core, "28123456789012340");
    assert_eq!(press(&mut app, &core, KeyCode::Enter), Effect::None, "17 digits are refused");
    type_text(&mut app, &core, "281234567890123401");
    match press(&mut app, &core, KeyCode::Enter) {
        Effect::Run(Action::QrPay { amount_minor: 500, code, paycode_password: None }) => {
            assert_eq!(code.as_str(), "281234567890123401")
        }
        other => panic!("expected a QR collection, got {other:?}"),
    }
}

#[test]
fn esc_cancels_every_prompt_without_a_core_call() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, "supervisor");
    // Each item, one step further each time, then Esc: always back to a menu, never a call.
    for (keys, steps) in [
        ("1", 0),
        ("1", 1),
        ("1", 2),
        ("1", 3),
        ("2", 2),
        ("3", 1),
        ("4", 0),
        ("5", 2),
        ("6", 1),
        ("7", 1),
        ("8", 0),
        ("9", 0),
    ] {
        type_text(&mut app, &core, keys);
        for _ in 0..steps {
            type_text(&mut app, &core, "5");
            let effect = press(&mut app, &core, KeyCode::Enter);
            assert!(!matches!(effect, Effect::Run(_)), "{keys}: {effect:?}");
        }
        assert_eq!(press(&mut app, &core, KeyCode::Esc), Effect::None);
        assert!(app.screen_name().starts_with("menu"), "{keys}/{steps}: {}", app.screen_name());
        press(&mut app, &core, KeyCode::Left);
        press(&mut app, &core, KeyCode::Esc);
    }
}

#[test]
fn prompts_time_out_back_to_the_menu() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, "operator");
    type_text(&mut app, &core, "112");
    app.tick(Instant::now());
    assert!(app.screen_name().starts_with("wizard"), "not yet");
    app.tick(Instant::now() + Duration::from_secs(61));
    assert_eq!(app.screen_name(), "menu:1");
    assert!(screen_text(&app, 80, 24).contains("Timed out"));
}

#[test]
fn an_initial_password_must_be_changed_before_the_menu() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = app(&core, Lang::Zh);
    type_text(&mut app, &core, "010000");
    assert!(matches!(press(&mut app, &core, KeyCode::Enter), Effect::Run(Action::Login { .. })));
    app.finish(Outcome { role: Some("operator".into()), must_change_password: Some(true), ..Outcome::done() }, &core);
    assert!(screen_text(&app, 80, 24).contains("初始密码必须修改"));
    type_text(&mut app, &core, "1357");
    press(&mut app, &core, KeyCode::Enter);
    type_text(&mut app, &core, "1358");
    assert_eq!(press(&mut app, &core, KeyCode::Enter), Effect::None, "a mismatch asks again");
    assert!(screen_text(&app, 80, 24).contains("两次输入的密码不一致"));
    type_text(&mut app, &core, "1357");
    press(&mut app, &core, KeyCode::Enter);
    type_text(&mut app, &core, "1357");
    match press(&mut app, &core, KeyCode::Enter) {
        Effect::Run(Action::ChangePassword { old, new }) => assert_eq!((old.as_str(), new.as_str()), ("0000", "1357")),
        other => panic!("expected the password change, got {other:?}"),
    }
    app.finish(Outcome { must_change_password: Some(false), ..Outcome::done() }, &core);
    assert_eq!(app.screen_name(), "menu:1");
}

#[test]
fn a_locked_operator_sees_the_unlock_time() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = app(&core, Lang::En);
    type_text(&mut app, &core, "01999999");
    press(&mut app, &core, KeyCode::Enter);
    // 2026-01-01T06:30:00Z is 14:30 in Shanghai.
    let locked = Outcome { locked_until_ms: Some(1_767_249_000_000), ..Outcome::refused("operator locked") };
    app.finish(locked, &core);
    assert_eq!(app.screen_name(), "sign_in");
    assert!(screen_text(&app, 80, 24).contains("Operator locked until 14:30"));
}

#[test]
fn supervisor_items_are_refused_to_operators_and_open_for_the_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, "operator");
    press(&mut app, &core, KeyCode::Right);
    type_text(&mut app, &core, "1");
    assert_eq!(app.screen_name(), "menu:2");
    assert!(screen_text(&app, 80, 24).contains("Only the supervisor"));

    let mut app = signed_in(&core, "supervisor");
    press(&mut app, &core, KeyCode::Right);
    type_text(&mut app, &core, "1");
    assert_eq!(app.screen_name(), "operators");
    type_text(&mut app, &core, "4");
    type_text(&mut app, &core, "02");
    press(&mut app, &core, KeyCode::Enter);
    assert!(matches!(
        press(&mut app, &core, KeyCode::Enter),
        Effect::Run(Action::UnlockOperator { code }) if code == "02"
    ));
}

#[test]
fn network_sign_out_and_quit_are_core_calls_or_effects() {
    let dir = tempfile::tempdir().unwrap();
    let core = offline_core(dir.path());
    let mut app = signed_in(&core, "operator");
    press(&mut app, &core, KeyCode::Right);
    assert_eq!(app.handle_key(char_key('6'), &core), Effect::Run(Action::SetOffline(true)));
    app.finish(Outcome::done(), &core);
    assert!(screen_text(&app, 80, 24).contains("Network:"));
    press(&mut app, &core, KeyCode::Esc);
    assert_eq!(app.screen_name(), "menu:2", "back to the page it came from");
    assert_eq!(app.handle_key(char_key('9'), &core), Effect::Run(Action::Logout));
    app.finish(Outcome::done(), &core);
    assert_eq!(app.screen_name(), "sign_in");
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.handle_key(ctrl_c, &core), Effect::Quit);
}
