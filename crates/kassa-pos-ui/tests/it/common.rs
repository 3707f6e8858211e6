//! What the tests share: a core that needs no host (its journal in a temp directory), keys, and
//! the screen as text.

use std::path::Path;

use kassa_pos_ui::{App, UiOptions};
use kassa_terminal::{Lang, Terminal, TerminalConfig, TEST_CARDS};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use zeroize::Zeroizing;

/// The demo terminal master key (demo only).
pub const DEMO_TMK: &str = "0123456789ABCDEFFEDCBA9876543210";

/// A core whose host is nowhere (nothing is sent by these tests): its journal is real.
pub fn offline_core(dir: &Path) -> Terminal {
    Terminal::start(TerminalConfig {
        terminal_id: "10000001".into(),
        iso: "127.0.0.1:9".parse().unwrap(),
        http_url: "http://127.0.0.1:9".into(),
        tmk: kassa_crypto::TdesKey::from_hex(DEMO_TMK).unwrap(),
        tms_credential: Zeroizing::new("not-a-real-credential".into()),
        data_dir: dir.to_owned(),
        lang: Lang::En,
        exchange_timeout_ms: 5_000,
    })
    .unwrap()
}

pub fn app(core: &Terminal, lang: Lang) -> App {
    App::new(core, UiOptions { lang, ..UiOptions::default() })
}

pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub fn char_key(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// Types `text` key by key; panics if a key asks for a core call.
pub fn type_text(app: &mut App, core: &Terminal, text: &str) {
    for c in text.chars() {
        let effect = app.handle_key(char_key(c), core);
        assert_eq!(effect, kassa_pos_ui::Effect::None, "typing {c:?} on {}", app.screen_name());
    }
}

pub fn press(app: &mut App, core: &Terminal, code: KeyCode) -> kassa_pos_ui::Effect {
    app.handle_key(key(code), core)
}

/// The screen as text, one line per row, wide (CJK) characters counted as the two cells they
/// take; trailing spaces cut.
pub fn screen_text(app: &App, width: u16, height: u16) -> String {
    let mut terminal = ratatui::Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| app.render(frame)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..height {
        let mut line = String::new();
        let mut skip = 0;
        for x in 0..width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let symbol = buffer[(x, y)].symbol();
            skip = unicode_width::UnicodeWidthStr::width(symbol).saturating_sub(1);
            line.push_str(symbol);
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    assert_no_full_pan(&text);
    text
}

/// No test card's number (nor any 13+ digit run that passes as one) ever appears in full.
pub fn assert_no_full_pan(text: &str) {
    for (pan, _) in TEST_CARDS {
        assert!(!text.contains(pan), "a full card number is on screen:\n{text}");
    }
    assert!(!text.contains("4111111111111111"), "a keyed card number is on screen:\n{text}");
}

/// Replaces what changes from run to run (the date and time a row was written).
pub fn normalize(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let shape = "dddd-dd-dd dd:dd:dd";
    let mut out = String::new();
    let mut index = 0;
    while index < chars.len() {
        let window = chars.get(index..index + shape.len());
        let is_stamp = window.is_some_and(|window| {
            window.iter().zip(shape.chars()).all(|(c, s)| if s == 'd' { c.is_ascii_digit() } else { *c == s })
        });
        if is_stamp {
            out.push_str("YYYY-MM-DD hh:mm:ss");
            index += shape.len();
        } else {
            out.push(chars[index]);
            index += 1;
        }
    }
    out
}

/// Compares with `tests/snapshots/NAME.txt`; `UPDATE_SNAPSHOTS=1` writes it instead.
pub fn check_snapshot(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("snapshots").join(format!("{name}.txt"));
    let text = normalize(text);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}: run with UPDATE_SNAPSHOTS=1 and review it", path.display()));
    assert!(
        expected == text,
        "{name} differs from its snapshot {}:\n--- expected\n{expected}\n--- got\n{text}",
        path.display()
    );
}
