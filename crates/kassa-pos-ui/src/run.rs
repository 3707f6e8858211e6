//! The run loop on the real terminal: alternate screen and raw mode (restored on exit and on
//! panic, by ratatui's own hook), keys read on a thread of their own, core calls run while the
//! screen keeps drawing and the language key and Esc keep working.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_terminal::Terminal;
use ratatui::crossterm::event::{self, Event};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::action::{execute, Action};
use crate::app::{App, Effect, UiOptions};

/// How often the screen wakes up without a key (idle timeouts, a QR code arriving).
pub const TICK_MS: u64 = 250;
/// Keys waiting to be handled at most; more are dropped (a stuck key cannot fill memory).
pub const KEYS_QUEUED_MAX: usize = 64;

/// Why the screen UI stopped.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The terminal (tty) could not be set up, drawn on or read.
    #[error("the terminal screen: {0}")]
    Io(#[from] std::io::Error),
}

/// Takes over the terminal and runs the POS screen until the cashier quits (Ctrl-C).
pub async fn run(mut core: Terminal, options: UiOptions) -> Result<(), UiError> {
    core.set_utc_offset_minutes(options.utc_offset_minutes);
    let mut screen = ratatui::try_init()?;
    let (keys, stop) = read_keys();
    let result = event_loop(&mut screen, &mut core, options, keys).await;
    stop.store(true, Ordering::Relaxed);
    let restored = ratatui::try_restore();
    result?;
    restored?;
    Ok(())
}

/// A thread that reads terminal events (crossterm's reads block) into a bounded queue; it ends
/// when `stop` is set or the queue's receiver is gone.
fn read_keys() -> (mpsc::Receiver<Event>, Arc<AtomicBool>) {
    let (sender, receiver) = mpsc::channel(KEYS_QUEUED_MAX);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(TICK_MS)) {
                Ok(true) => match event::read() {
                    Ok(event) => {
                        if let Err(mpsc::error::TrySendError::Closed(_)) = sender.try_send(event) {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the keyboard");
                        return;
                    }
                },
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "polling the keyboard");
                    return;
                }
            }
        }
    });
    (receiver, stop)
}

fn bell() {
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(b"\x07").and_then(|()| stdout.flush());
}

async fn event_loop(
    screen: &mut DefaultTerminal,
    core: &mut Terminal,
    options: UiOptions,
    mut keys: mpsc::Receiver<Event>,
) -> Result<(), UiError> {
    let mut app = App::new(core, options);
    loop {
        screen.draw(|frame| app.render(frame))?;
        if app.take_bell() {
            bell();
        }
        let effect = tokio::select! {
            event = keys.recv() => match event {
                Some(Event::Key(key)) => app.handle_key(key, core),
                Some(_) => Effect::None,
                None => return Ok(()),
            },
            () = tokio::time::sleep(Duration::from_millis(TICK_MS)) => {
                app.tick(Instant::now());
                Effect::None
            }
        };
        match effect {
            Effect::None | Effect::Cancel => {}
            Effect::Quit => return Ok(()),
            Effect::Run(action) => {
                if !run_action(screen, &mut app, core, &action, &mut keys).await? {
                    return Ok(());
                }
            }
            Effect::Print(receipt) => {
                screen.draw(|frame| app.render(frame))?;
                let printed = core.print(&receipt).await.map_err(|error| error.to_string());
                app.printed(printed);
            }
        }
    }
}

/// Runs one core call while drawing; `false` when the cashier quit meanwhile.
async fn run_action(
    screen: &mut DefaultTerminal,
    app: &mut App,
    core: &mut Terminal,
    action: &Action,
    keys: &mut mpsc::Receiver<Event>,
) -> Result<bool, UiError> {
    core.set_lang(app.lang());
    let (codes_sender, mut codes) = mpsc::channel::<String>(4);
    let mut on_code = move |code: &str| {
        let _ = codes_sender.try_send(code.to_owned());
    };
    let cancel = CancellationToken::new();
    let (outcome, keep_going) = {
        let call = execute(core, action, &mut on_code, &cancel);
        tokio::pin!(call);
        loop {
            screen.draw(|frame| app.render(frame))?;
            tokio::select! {
                outcome = &mut call => break (Some(outcome), true),
                Some(code) = codes.recv() => app.show_qr_code(&code),
                event = keys.recv() => match event {
                    Some(Event::Key(key)) => match app.busy_key(key) {
                        // The core closes the order and answers (closed, or paid if the payer
                        // was faster): keep waiting for it.
                        Effect::Cancel if action.cancellable() => cancel.cancel(),
                        Effect::Quit => break (None, false),
                        _ => {}
                    },
                    Some(_) => {}
                    None => break (None, false),
                },
            }
        }
    };
    if let Some(outcome) = outcome {
        app.finish(outcome, core);
    }
    Ok(keep_going)
}
