//! The POS terminal's screen UI (`kassa terminal` without `--headless`): a ratatui view over the
//! terminal core, as a real POS behaves — operator sign-in, a numbered main menu, keypad amount
//! entry with confirmation, a card "reader" for the test cards, masked PIN and password entry,
//! the merchant QR drawn on screen, result screens that explain the response code, slips
//! previewed and printed, Chinese and English switched with F2 at any screen.
//!
//! - [`App`]: the state machine. [`App::handle_key`] turns a key into an [`Effect`] (a core call
//!   to run is an [`Action`]); [`App::finish`] takes the call's outcome; [`App::render`] draws.
//!   [`App::step`] does all three with the core at hand (tests drive the App with it).
//! - [`action`]: one [`Action`] per method of [`kassa_terminal::Terminal`], and [`execute`].
//! - slips come from the core ([`kassa_terminal::Terminal::receipt`]) and are previewed with
//!   `kassa_receipt::preview`; approvals print through the core as in headless mode.
//! - [`run()`]: the real terminal (alternate screen, raw mode, restored on exit and on panic).
//!
//! **Invariant**: the UI has no transaction logic: every change goes through a method of the
//! core, the same the headless driver calls. A full card number is never drawn: card numbers are
//! masked (first 6, last 4) on every screen, as typed too; PINs and passwords show as `*`.
//! **Boundary**: reads the core (journal, parameters) for what it shows; never writes it.

pub mod action;
pub mod app;
pub mod run;
pub mod text;
pub mod view;

pub use action::{execute, Action};
pub use app::{App, Effect, Item, Screen, Step, Task, UiOptions};
pub use run::{run, UiError};
