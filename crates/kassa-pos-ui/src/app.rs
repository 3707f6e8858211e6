//! The App: the screen's state machine. Keys come in ([`App::handle_key`]), an [`Effect`] goes
//! out: nothing, a core call to run ([`Effect::Run`]), a slip to print, or quit. The outcome of a
//! core call comes back through [`App::finish`]. The App reads the core (journal, parameters) but
//! never changes it: every change is an [`Action`], a method of the core.

use std::time::{Duration, Instant};

use kassa_receipt::{Copy, Receipt};
use kassa_terminal::journal::Entry;
use kassa_terminal::{JournalItem, Lang, Outcome, Status, Terminal, TEST_CARDS};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use zeroize::Zeroizing;

use crate::action::{execute, Action, Secret};
use crate::text::Note;
use tokio_util::sync::CancellationToken;

/// How long a prompt waits for a key before it goes back to the menu (unless set otherwise).
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// The longest a typed password, PIN or code may be.
pub const SECRET_CHARS_MAX: usize = 32;
/// The longest a typed reason or trade reference may be.
pub const TEXT_CHARS_MAX: usize = 64;
/// The longest a keyed card number may be.
pub const PAN_DIGITS_MAX: usize = 19;
/// Digits of a customer's payment code.
pub const PAYMENT_CODE_DIGITS: usize = 18;

/// How the screen UI is set up.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// The language at start (F2 switches at any screen).
    pub lang: Lang,
    /// How long a prompt waits for the cashier before going back to the menu.
    pub idle_timeout: Duration,
    /// The local time of slips and unlock times, minutes east of UTC (480: China).
    pub utc_offset_minutes: i32,
}

impl Default for UiOptions {
    fn default() -> UiOptions {
        UiOptions {
            lang: Lang::Zh,
            idle_timeout: Duration::from_millis(IDLE_TIMEOUT_MS_DEFAULT),
            utc_offset_minutes: kassa_domain::calendar::SHANGHAI_UTC_OFFSET_MINUTES,
        }
    }
}

/// What a key asks the run loop to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing but a redraw.
    None,
    /// Leave the program.
    Quit,
    /// Run this core call, then give its outcome to [`App::finish`].
    Run(Action),
    /// Abandon the running call (only a cancellable one, see [`Action::cancellable`]).
    Cancel,
    /// Print this slip (merchant and customer copies, through the core's printer), then tell
    /// [`App::printed`].
    Print(Box<Receipt>),
}

/// The items of the main menu, page by page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// 消费.
    Sale,
    /// 扫码收款: the customer's payment code.
    QrCollect,
    /// 商户收款码: the merchant QR on screen.
    MerchantQr,
    /// 撤销.
    Void,
    /// 退货.
    Refund,
    /// 扫码退款.
    QrRefund,
    /// 余额查询.
    Balance,
    /// 结算.
    Settle,
    /// 重打印.
    Reprint,
    /// 交易查询.
    Query,
    /// 操作员管理 (supervisor).
    Operators,
    /// 修改密码.
    OwnPassword,
    /// 退款密码 (supervisor).
    RefundPassword,
    /// 付款码密码 (supervisor).
    PaycodePassword,
    /// 参数下载.
    Parameters,
    /// 离线/联机.
    Network,
    /// 上送: send what the journal holds.
    SendUnsent,
    /// 签到: the terminal's sign-in again.
    SignIn,
    /// 签退.
    SignOut,
}

/// The menu's pages: keys 1-9 and 0 pick the items of the page shown.
pub const MENU_PAGES: [&[Item]; 2] = [
    &[
        Item::Sale,
        Item::QrCollect,
        Item::MerchantQr,
        Item::Void,
        Item::Refund,
        Item::QrRefund,
        Item::Balance,
        Item::Settle,
        Item::Reprint,
        Item::Query,
    ],
    &[
        Item::Operators,
        Item::OwnPassword,
        Item::RefundPassword,
        Item::PaycodePassword,
        Item::Parameters,
        Item::Network,
        Item::SendUnsent,
        Item::SignIn,
        Item::SignOut,
    ],
];

/// The operator-management actions (supervisor).
pub const OPERATOR_TASKS: [Task; 5] =
    [Task::AddOperator, Task::DisableOperator, Task::EnableOperator, Task::UnlockOperator, Task::ResetOperator];

/// What a series of prompts is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// 消费.
    Sale,
    /// 扫码收款.
    QrCollect,
    /// 商户收款码.
    MerchantQr,
    /// 撤销.
    Void,
    /// 退货.
    Refund,
    /// 扫码退款.
    QrRefund,
    /// 余额查询.
    Balance,
    /// 结算.
    Settle,
    /// 重打印.
    Reprint,
    /// 修改密码; `forced` after signing in with an initial password.
    OwnPassword {
        /// The core refuses everything else until it is changed.
        forced: bool,
    },
    /// 修改退款密码.
    RefundPassword,
    /// 付款码密码.
    PaycodePassword,
    /// 增加操作员.
    AddOperator,
    /// 停用操作员.
    DisableOperator,
    /// 启用操作员.
    EnableOperator,
    /// 解锁操作员.
    UnlockOperator,
    /// 重置操作员密码.
    ResetOperator,
    /// A call without prompts (parameters, sign-in, network, flush, sign-out).
    Direct,
}

impl Task {
    /// Whether an approval of it moves money (a bell and a slip).
    pub fn moves_money(self) -> bool {
        matches!(self, Task::Sale | Task::QrCollect | Task::MerchantQr | Task::Void | Task::Refund | Task::QrRefund)
    }
}

/// One prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keypad amount: digits shift in from the right.
    Amount,
    /// The amount and kind, confirmed before sending.
    Confirm,
    /// The card reader: a test card swiped, inserted or tapped, or a number keyed.
    Card,
    /// The PIN (masked); optional for a sale.
    Pin {
        /// A balance inquiry needs one.
        required: bool,
    },
    /// The customer's payment code (付款码).
    PayCode,
    /// The payment-code password (付款码密码).
    PaycodePassword,
    /// The STAN of a sale (void, reprint).
    Stan {
        /// Empty means "the last" (reprint).
        optional: bool,
    },
    /// The sale's RRN (refund).
    Rrn,
    /// The sale's date, MMDD (refund).
    Date,
    /// The QR payment's trade reference (QR refund).
    OutTradeNo,
    /// The merchant's refund password (退款密码).
    RefundPassword,
    /// The current password.
    OldPassword {
        /// Empty means "none set yet" (payment-code password).
        optional: bool,
    },
    /// The new password.
    NewPassword,
    /// The new password again.
    RepeatPassword,
    /// An operator code (two digits).
    OperatorCode,
    /// Why (operator password reset).
    Reason,
}

/// How the cashier presented the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// 刷卡.
    Swipe,
    /// 插卡.
    Insert,
    /// 挥卡.
    Tap,
    /// 手输卡号.
    Keyed,
}

/// What the prompts have collected so far.
#[derive(Default)]
pub struct Draft {
    pub(crate) amount_minor: u64,
    pub(crate) pan: Secret,
    pub(crate) read_mode: Option<ReadMode>,
    pub(crate) pin: Option<Secret>,
    pub(crate) code: Secret,
    pub(crate) paycode_password: Option<Secret>,
    pub(crate) stan: Option<u32>,
    pub(crate) rrn: String,
    pub(crate) date_mmdd: String,
    pub(crate) out_trade_no: String,
    pub(crate) refund_password: Secret,
    pub(crate) old_password: Option<Secret>,
    pub(crate) new_password: Secret,
    pub(crate) operator_code: String,
    pub(crate) reason: String,
    /// The sale a void names, as the journal has it (amount, masked card).
    pub(crate) original: Option<(u64, String)>,
}

/// A task's prompts in progress.
pub struct Wizard {
    pub(crate) task: Task,
    pub(crate) index: usize,
    pub(crate) draft: Draft,
    /// What is being typed at the current prompt.
    pub(crate) input: Secret,
    /// The card reader's highlighted test card.
    pub(crate) card: usize,
    /// The card reader is taking a keyed number.
    pub(crate) keying: bool,
    pub(crate) error: Option<Note>,
}

/// The payment-code rules of the downloaded parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QrRules {
    /// A payment-code password is asked above `password_above_minor`.
    pub password_required: bool,
    /// The amount above which it is asked.
    pub password_above_minor: u64,
    /// QR refunds need it.
    pub password_for_refunds: bool,
}

impl QrRules {
    fn of(core: &Terminal) -> QrRules {
        let Some(parameters) = core.parameters() else { return QrRules::default() };
        let qr = &parameters.raw["qr"];
        QrRules {
            password_required: qr["password_required"].as_bool().unwrap_or(false),
            password_above_minor: qr["password_above_minor"].as_u64().unwrap_or(0),
            password_for_refunds: qr["password_for_refunds"].as_bool().unwrap_or(false),
        }
    }
}

impl Wizard {
    fn new(task: Task) -> Wizard {
        Wizard {
            task,
            index: 0,
            draft: Draft::default(),
            input: Zeroizing::new(String::new()),
            card: 0,
            keying: false,
            error: None,
        }
    }

    /// The prompts of the task, given what is collected (the payment-code password depends on
    /// the amount, which comes first).
    pub fn steps(&self, rules: QrRules) -> Vec<Step> {
        match self.task {
            Task::Sale => vec![Step::Amount, Step::Confirm, Step::Card, Step::Pin { required: false }],
            Task::QrCollect => {
                let mut steps = vec![Step::Amount, Step::Confirm, Step::PayCode];
                if rules.password_required && self.draft.amount_minor > rules.password_above_minor {
                    steps.push(Step::PaycodePassword);
                }
                steps
            }
            Task::MerchantQr => vec![Step::Amount, Step::Confirm],
            Task::Void => vec![Step::Stan { optional: false }, Step::Confirm, Step::RefundPassword],
            Task::Refund => vec![Step::Rrn, Step::Date, Step::Amount, Step::Confirm, Step::RefundPassword],
            Task::QrRefund => {
                let mut steps = vec![Step::OutTradeNo, Step::Amount, Step::Confirm];
                if rules.password_for_refunds {
                    steps.push(Step::PaycodePassword);
                }
                steps
            }
            Task::Balance => vec![Step::Card, Step::Pin { required: true }],
            Task::Settle => vec![Step::Confirm],
            Task::Reprint => vec![Step::Stan { optional: true }],
            Task::OwnPassword { forced: true } => vec![Step::NewPassword, Step::RepeatPassword],
            Task::OwnPassword { forced: false } | Task::RefundPassword => {
                vec![Step::OldPassword { optional: false }, Step::NewPassword, Step::RepeatPassword]
            }
            Task::PaycodePassword => {
                vec![Step::OldPassword { optional: true }, Step::NewPassword, Step::RepeatPassword]
            }
            Task::AddOperator => vec![Step::OperatorCode, Step::NewPassword, Step::RepeatPassword],
            Task::DisableOperator | Task::EnableOperator | Task::UnlockOperator => {
                vec![Step::OperatorCode, Step::Confirm]
            }
            Task::ResetOperator => {
                vec![Step::OperatorCode, Step::NewPassword, Step::RepeatPassword, Step::Reason]
            }
            Task::Direct => Vec::new(),
        }
    }

    /// The prompt shown now.
    pub fn step(&self, rules: QrRules) -> Option<Step> {
        self.steps(rules).get(self.index).copied()
    }
}

/// The sign-in screen.
#[derive(Default)]
pub struct SignInForm {
    pub(crate) operator: String,
    pub(crate) password: Secret,
    /// 0: operator code, 1: password.
    pub(crate) field: usize,
    pub(crate) error: Option<Note>,
}

/// A result to show.
pub struct ResultView {
    pub(crate) task: Task,
    pub(crate) action: &'static str,
    pub(crate) outcome: Outcome,
    /// The card as the UI read it, masked (first 6, last 4).
    pub(crate) pan_masked: Option<String>,
}

/// A slip on screen.
pub struct ReceiptView {
    pub(crate) receipt: Receipt,
    pub(crate) copy: Copy,
    pub(crate) scroll: u16,
    pub(crate) notice: Option<Note>,
}

/// The open batch on screen.
pub struct QueryView {
    pub(crate) rows: Vec<JournalItem>,
    pub(crate) selected: usize,
    pub(crate) error: Option<Note>,
}

/// What the screen shows.
pub enum Screen {
    /// Operator sign-in.
    SignIn(SignInForm),
    /// The main menu: its page and highlighted item.
    Menu {
        /// 0 or 1.
        page: usize,
        /// The highlighted item of the page.
        selected: usize,
    },
    /// A task's prompts.
    Wizard(Wizard),
    /// Operator management (supervisor): the highlighted action.
    Operators {
        /// Index into [`OPERATOR_TASKS`].
        selected: usize,
    },
    /// A core call is running.
    Busy {
        /// What runs.
        task: Task,
        /// The core method's name.
        action: &'static str,
        /// Its amount, if any.
        amount_minor: Option<u64>,
    },
    /// The merchant QR, waiting for the customer to pay.
    MerchantQr {
        /// Minor units.
        amount_minor: u64,
        /// The code, once the host has made the order.
        code: Option<String>,
        /// The cashier pressed Esc: the core is closing the order.
        cancelling: bool,
    },
    /// An outcome.
    Result(ResultView),
    /// A slip.
    Receipt(ReceiptView),
    /// 交易查询.
    Query(QueryView),
}

/// What the status bar shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusLine {
    /// Field 41.
    pub terminal_id: String,
    /// The merchant's name, once parameters are downloaded.
    pub merchant_name: String,
    /// The signed-in operator.
    pub operator: Option<String>,
    /// `supervisor` or `operator`.
    pub role: Option<String>,
    /// Whether the network is switched off.
    pub offline: bool,
    /// Items of the journal still owed to the host.
    pub unsent: u32,
    /// Whether slips are printed (the terminal has a printer).
    pub printer: bool,
}

/// What is running, kept for [`App::finish`] (never a secret).
struct Running {
    task: Task,
    action: &'static str,
    pan_masked: Option<String>,
    operator: Option<String>,
}

/// The screen UI's state.
pub struct App {
    pub(crate) lang: Lang,
    pub(crate) screen: Screen,
    pub(crate) options: UiOptions,
    pub(crate) status: StatusLine,
    pub(crate) rules: QrRules,
    pub(crate) notice: Option<Note>,
    running: Option<Running>,
    /// The password of a sign-in with an initial password, for the forced change.
    login_password: Option<Secret>,
    last_activity: Instant,
    bell: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("lang", &self.lang).field("screen", &self.screen_name()).finish_non_exhaustive()
    }
}

fn is_press(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press || key.kind == KeyEventKind::Repeat
}

fn ctrl(key: &KeyEvent, letter: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(letter)
}

fn digit_of(key: &KeyEvent) -> Option<u32> {
    match key.code {
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => c.to_digit(10),
        _ => None,
    }
}

/// `622202*****0128` style as a number is typed: the first 6 and the last 4 shown once there
/// are more than 10, everything between masked.
pub fn mask_typed_pan(digits: &str) -> String {
    let count = digits.chars().count();
    if count <= 10 {
        return digits.chars().take(6).chain(digits.chars().skip(6).map(|_| '*')).collect();
    }
    digits.chars().enumerate().map(|(index, c)| if index < 6 || index >= count - 4 { c } else { '*' }).collect()
}

impl App {
    /// The App over `core` (read for the status bar and the journal), on the sign-in screen.
    pub fn new(core: &Terminal, options: UiOptions) -> App {
        let mut app = App {
            lang: options.lang,
            screen: Screen::SignIn(SignInForm::default()),
            options,
            status: StatusLine::default(),
            rules: QrRules::default(),
            notice: None,
            running: None,
            login_password: None,
            last_activity: Instant::now(),
            bell: false,
        };
        app.refresh(core);
        app
    }

    /// The language shown.
    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// What the status bar shows.
    pub fn status(&self) -> &StatusLine {
        &self.status
    }

    /// The screen shown.
    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    /// The screen's name (for tests and logs): `sign_in`, `menu`, `wizard:sale:amount`, …
    pub fn screen_name(&self) -> String {
        match &self.screen {
            Screen::SignIn(_) => "sign_in".into(),
            Screen::Menu { page, .. } => format!("menu:{}", page + 1),
            Screen::Wizard(wizard) => format!("wizard:{:?}:{:?}", wizard.task, wizard.step(self.rules)),
            Screen::Operators { .. } => "operators".into(),
            Screen::Busy { action, .. } => format!("busy:{action}"),
            Screen::MerchantQr { .. } => "merchant_qr".into(),
            Screen::Result(_) => "result".into(),
            Screen::Receipt(_) => "receipt".into(),
            Screen::Query(_) => "query".into(),
        }
    }

    /// Whether the last outcome asked for the bell (an approval); clears it.
    pub fn take_bell(&mut self) -> bool {
        std::mem::take(&mut self.bell)
    }

    /// Draws the screen.
    pub fn render(&self, frame: &mut Frame) {
        crate::view::render(self, frame);
    }

    /// Reads the status bar's facts and the QR rules from the core.
    pub fn refresh(&mut self, core: &Terminal) {
        self.status.terminal_id = core.terminal_id().to_owned();
        self.status.merchant_name = core.parameters().map(|p| p.merchant_name.clone()).unwrap_or_default();
        self.status.offline = core.is_offline();
        self.status.unsent = core.journal_store().unsent_count().unwrap_or(0);
        self.status.printer = core.printer().is_some();
        if let Some(operator) = core.operator() {
            self.status.operator = Some(operator.to_owned());
            self.status.role = core.role().map(str::to_owned);
        }
        self.rules = QrRules::of(core);
    }

    fn toggle_lang(&mut self) {
        self.lang = match self.lang {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        };
    }

    fn back_to_menu(&mut self, page: usize) {
        self.screen = Screen::Menu { page, selected: 0 };
    }

    /// Goes back to the menu when a prompt has waited longer than the idle timeout.
    pub fn tick(&mut self, now: Instant) {
        let waiting = matches!(
            self.screen,
            Screen::Wizard(_) | Screen::Operators { .. } | Screen::Result(_) | Screen::Receipt(_) | Screen::Query(_)
        );
        let forced = matches!(&self.screen, Screen::Wizard(w) if w.task == Task::OwnPassword { forced: true });
        if waiting && !forced && now.saturating_duration_since(self.last_activity) >= self.options.idle_timeout {
            self.notice = Some(Note::new("Timed out: back to the menu", "操作超时，已返回主菜单"));
            self.back_to_menu(0);
        }
    }

    /// One key. `core` is read (journal, parameters), never changed: changes are [`Effect::Run`].
    pub fn handle_key(&mut self, key: KeyEvent, core: &Terminal) -> Effect {
        if !is_press(&key) {
            return Effect::None;
        }
        self.last_activity = Instant::now();
        if ctrl(&key, 'c') || ctrl(&key, 'q') {
            return Effect::Quit;
        }
        if key.code == KeyCode::F(2) {
            self.toggle_lang();
            return Effect::None;
        }
        let takes_letters = matches!(&self.screen, Screen::Wizard(_) | Screen::SignIn(_));
        if !takes_letters && matches!(key.code, KeyCode::Char('l' | 'L')) {
            self.toggle_lang();
            return Effect::None;
        }
        let screen = std::mem::replace(&mut self.screen, Screen::Menu { page: 0, selected: 0 });
        match screen {
            Screen::SignIn(form) => self.sign_in_key(form, key),
            Screen::Menu { page, selected } => self.menu_key(page, selected, key, core),
            Screen::Wizard(wizard) => self.wizard_key(wizard, key, core),
            Screen::Operators { selected } => self.operators_key(selected, key),
            screen @ (Screen::Busy { .. } | Screen::MerchantQr { .. }) => {
                self.screen = screen;
                self.busy_key(key)
            }
            Screen::Result(view) => self.result_key(view, key, core),
            Screen::Receipt(view) => self.receipt_key(view, key),
            Screen::Query(view) => self.query_key(view, key, core),
        }
    }

    /// A key while a core call runs: only the language, quit, and Esc for a cancellable call.
    pub fn busy_key(&mut self, key: KeyEvent) -> Effect {
        if !is_press(&key) {
            return Effect::None;
        }
        if ctrl(&key, 'c') || ctrl(&key, 'q') {
            return Effect::Quit;
        }
        match key.code {
            KeyCode::F(2) | KeyCode::Char('l' | 'L') => {
                self.toggle_lang();
                Effect::None
            }
            KeyCode::Esc => match &mut self.screen {
                Screen::MerchantQr { cancelling, .. } => {
                    *cancelling = true;
                    Effect::Cancel
                }
                _ => Effect::None,
            },
            _ => Effect::None,
        }
    }

    fn sign_in_key(&mut self, mut form: SignInForm, key: KeyEvent) -> Effect {
        match key.code {
            KeyCode::Char(c) if c.is_ascii_digit() && form.field == 0 && form.operator.len() < 2 => {
                form.operator.push(c);
                if form.operator.len() == 2 {
                    form.field = 1;
                }
            }
            KeyCode::Char(c) if form.field == 1 && (c.is_ascii_graphic()) && form.password.len() < SECRET_CHARS_MAX => {
                form.password.push(c)
            }
            KeyCode::Backspace if form.field == 1 && form.password.is_empty() => form.field = 0,
            KeyCode::Backspace if form.field == 1 => {
                form.password.pop();
            }
            KeyCode::Backspace => {
                form.operator.pop();
            }
            KeyCode::Tab | KeyCode::Down | KeyCode::Up => form.field = 1 - form.field,
            KeyCode::Esc => form = SignInForm::default(),
            KeyCode::Enter if form.field == 0 && form.operator.len() == 2 => form.field = 1,
            KeyCode::Enter if form.operator.len() == 2 && !form.password.is_empty() => {
                let operator = form.operator.clone();
                let password = Zeroizing::new(form.password.as_str().to_owned());
                self.login_password = Some(Zeroizing::new(form.password.as_str().to_owned()));
                return self.run(
                    Task::Direct,
                    Action::Login { operator: operator.clone(), password },
                    None,
                    Some(operator),
                );
            }
            KeyCode::Enter => {
                form.error =
                    Some(Note::new("Enter the two-digit operator code and the password", "请输入两位操作员号和密码"));
            }
            _ => {}
        }
        self.screen = Screen::SignIn(form);
        Effect::None
    }

    fn menu_key(&mut self, page: usize, selected: usize, key: KeyEvent, core: &Terminal) -> Effect {
        let items = MENU_PAGES.get(page).copied().unwrap_or(MENU_PAGES[0]);
        let pick = |index: usize| items.get(index).copied();
        let chosen = match key.code {
            KeyCode::Char('0') => pick(9),
            KeyCode::Char(c @ '1'..='9') => pick(c as usize - '1' as usize),
            KeyCode::Enter => pick(selected),
            KeyCode::Up => {
                self.screen = Screen::Menu { page, selected: selected.checked_sub(1).unwrap_or(items.len() - 1) };
                return Effect::None;
            }
            KeyCode::Down => {
                self.screen = Screen::Menu { page, selected: (selected + 1) % items.len() };
                return Effect::None;
            }
            KeyCode::Left
            | KeyCode::Right
            | KeyCode::PageUp
            | KeyCode::PageDown
            | KeyCode::Tab
            | KeyCode::Char('*') => {
                self.screen = Screen::Menu { page: 1 - page.min(1), selected: 0 };
                return Effect::None;
            }
            KeyCode::Esc if page > 0 => {
                self.back_to_menu(0);
                return Effect::None;
            }
            _ => None,
        };
        self.screen = Screen::Menu { page, selected };
        match chosen {
            Some(item) => {
                self.notice = None;
                self.choose(item, core)
            }
            None => Effect::None,
        }
    }

    fn is_supervisor(&self) -> bool {
        self.status.role.as_deref() == Some("supervisor")
    }

    fn supervisor_only(&mut self) -> Effect {
        self.notice = Some(Note::new("Only the supervisor (00) may do this", "仅主管(00)可操作"));
        Effect::None
    }

    /// Starts what a menu item does.
    pub fn choose(&mut self, item: Item, core: &Terminal) -> Effect {
        let task = match item {
            Item::Sale => Task::Sale,
            Item::QrCollect => Task::QrCollect,
            Item::MerchantQr => Task::MerchantQr,
            Item::Void => Task::Void,
            Item::Refund => Task::Refund,
            Item::QrRefund => Task::QrRefund,
            Item::Balance => Task::Balance,
            Item::Settle => Task::Settle,
            Item::Reprint => Task::Reprint,
            Item::OwnPassword => Task::OwnPassword { forced: false },
            Item::RefundPassword if self.is_supervisor() => Task::RefundPassword,
            Item::PaycodePassword if self.is_supervisor() => Task::PaycodePassword,
            Item::RefundPassword | Item::PaycodePassword | Item::Operators if !self.is_supervisor() => {
                return self.supervisor_only()
            }
            Item::Operators => {
                self.screen = Screen::Operators { selected: 0 };
                return Effect::None;
            }
            Item::Query => {
                self.open_query(core);
                return Effect::None;
            }
            Item::Parameters => return self.run(Task::Direct, Action::DownloadParameters, None, None),
            Item::Network => return self.run(Task::Direct, Action::SetOffline(!self.status.offline), None, None),
            Item::SendUnsent => return self.run(Task::Direct, Action::Flush, None, None),
            Item::SignIn => return self.run(Task::Direct, Action::SignIn, None, None),
            Item::SignOut => return self.run(Task::Direct, Action::Logout, None, None),
            Item::RefundPassword | Item::PaycodePassword => return self.supervisor_only(),
        };
        self.start(task, core);
        Effect::None
    }

    fn start(&mut self, task: Task, core: &Terminal) {
        let mut wizard = Wizard::new(task);
        if task == Task::QrRefund {
            // The newest QR payment of the open batch, as a suggestion the cashier may replace.
            if let Ok(entries) = core.journal_store().open_batch() {
                if let Some(paid) = entries.iter().find(|entry| {
                    matches!(entry.kind.as_str(), "qr_pay" | "qr_show") && entry.state.as_str() == "approved"
                }) {
                    wizard.input = Zeroizing::new(paid.out_trade_no.clone());
                }
            }
        }
        self.screen = Screen::Wizard(wizard);
    }

    fn open_query(&mut self, core: &Terminal) {
        let outcome = core.journal();
        let error = reason_note(&outcome).filter(|_| outcome.status != Status::Done);
        let view = QueryView { rows: outcome.entries.unwrap_or_default(), selected: 0, error };
        self.screen = Screen::Query(view);
    }

    fn operators_key(&mut self, selected: usize, key: KeyEvent) -> Effect {
        let count = OPERATOR_TASKS.len();
        let chosen = match key.code {
            KeyCode::Char(c @ '1'..='5') => OPERATOR_TASKS.get(c as usize - '1' as usize).copied(),
            KeyCode::Enter => OPERATOR_TASKS.get(selected).copied(),
            KeyCode::Up => {
                self.screen = Screen::Operators { selected: selected.checked_sub(1).unwrap_or(count - 1) };
                return Effect::None;
            }
            KeyCode::Down => {
                self.screen = Screen::Operators { selected: (selected + 1) % count };
                return Effect::None;
            }
            KeyCode::Esc => {
                self.back_to_menu(1);
                return Effect::None;
            }
            _ => None,
        };
        match chosen {
            Some(task) => self.screen = Screen::Wizard(Wizard::new(task)),
            None => self.screen = Screen::Operators { selected },
        }
        Effect::None
    }

    fn cancel_wizard(&mut self, wizard: &Wizard) {
        if wizard.task == (Task::OwnPassword { forced: true }) {
            // Nothing else is allowed before the change: back to the sign-in.
            self.login_password = None;
            self.status.operator = None;
            self.status.role = None;
            self.screen = Screen::SignIn(SignInForm {
                error: Some(Note::new(
                    "The initial password must be changed before anything else",
                    "必须先修改初始密码",
                )),
                ..SignInForm::default()
            });
            return;
        }
        self.notice = Some(Note::new("Cancelled", "已取消"));
        let page = match wizard.task {
            Task::OwnPassword { .. }
            | Task::RefundPassword
            | Task::PaycodePassword
            | Task::AddOperator
            | Task::DisableOperator
            | Task::EnableOperator
            | Task::UnlockOperator
            | Task::ResetOperator => 1,
            _ => 0,
        };
        self.back_to_menu(page);
    }

    fn wizard_key(&mut self, mut wizard: Wizard, key: KeyEvent, core: &Terminal) -> Effect {
        let Some(step) = wizard.step(self.rules) else {
            self.back_to_menu(0);
            return Effect::None;
        };
        if step == Step::Card {
            return self.card_key(wizard, key);
        }
        match key.code {
            KeyCode::Esc => {
                self.cancel_wizard(&wizard);
                return Effect::None;
            }
            KeyCode::Enter => return self.accept(wizard, step, core),
            KeyCode::Backspace if step == Step::Amount => wizard.draft.amount_minor /= 10,
            KeyCode::Backspace => {
                wizard.input.pop();
            }
            KeyCode::Char(_) if step == Step::Amount => {
                if let Some(digit) = digit_of(&key) {
                    let shifted =
                        wizard.draft.amount_minor.checked_mul(10).and_then(|a| a.checked_add(u64::from(digit)));
                    match shifted.filter(|amount| *amount <= kassa_terminal::money::AMOUNT_MINOR_MAX) {
                        Some(amount) => wizard.draft.amount_minor = amount,
                        None => {
                            wizard.error = Some(Note::new("The amount is at most 1000000.00", "金额不能超过1000000.00"))
                        }
                    }
                }
            }
            KeyCode::Char(c)
                if !key.modifiers.contains(KeyModifiers::CONTROL) && accepts(step, c, wizard.input.chars().count()) =>
            {
                wizard.input.push(c);
            }
            _ => {}
        }
        self.screen = Screen::Wizard(wizard);
        Effect::None
    }

    fn card_key(&mut self, mut wizard: Wizard, key: KeyEvent) -> Effect {
        let count = TEST_CARDS.len();
        if wizard.keying {
            match key.code {
                KeyCode::Esc => {
                    wizard.keying = false;
                    wizard.input = Zeroizing::new(String::new());
                }
                KeyCode::Backspace => {
                    wizard.input.pop();
                }
                KeyCode::Char(c) if c.is_ascii_digit() && wizard.input.len() < PAN_DIGITS_MAX => wizard.input.push(c),
                KeyCode::Enter => {
                    if kassa_domain::Pan::parse(&wizard.input).is_ok() {
                        let pan = Zeroizing::new(wizard.input.as_str().to_owned());
                        wizard.input = Zeroizing::new(String::new());
                        wizard.keying = false;
                        return self.card_read(wizard, pan, ReadMode::Keyed);
                    }
                    wizard.error = Some(Note::new(
                        "Not a valid card number (13 to 19 digits, Luhn)",
                        "卡号无效（13至19位，校验位不符）",
                    ));
                }
                _ => {}
            }
            self.screen = Screen::Wizard(wizard);
            return Effect::None;
        }
        let mode = match key.code {
            KeyCode::Esc => {
                self.cancel_wizard(&wizard);
                return Effect::None;
            }
            KeyCode::Up => {
                wizard.card = wizard.card.checked_sub(1).unwrap_or(count - 1);
                None
            }
            KeyCode::Down => {
                wizard.card = (wizard.card + 1) % count;
                None
            }
            KeyCode::Char(c @ '1'..='9') => {
                let index = c as usize - '1' as usize;
                if index < count {
                    wizard.card = index;
                }
                None
            }
            KeyCode::Enter | KeyCode::Char('s' | 'S') => Some(ReadMode::Swipe),
            KeyCode::Char('i' | 'I') => Some(ReadMode::Insert),
            KeyCode::Char('t' | 'T') => Some(ReadMode::Tap),
            KeyCode::Char('k' | 'K') => {
                wizard.keying = true;
                wizard.error = None;
                None
            }
            _ => None,
        };
        match (mode, TEST_CARDS.get(wizard.card)) {
            (Some(mode), Some((pan, _))) => {
                let pan = Zeroizing::new((*pan).to_owned());
                self.card_read(wizard, pan, mode)
            }
            _ => {
                self.screen = Screen::Wizard(wizard);
                Effect::None
            }
        }
    }

    fn card_read(&mut self, mut wizard: Wizard, pan: Secret, mode: ReadMode) -> Effect {
        wizard.draft.pan = pan;
        wizard.draft.read_mode = Some(mode);
        wizard.error = None;
        wizard.index += 1;
        self.screen = Screen::Wizard(wizard);
        Effect::None
    }

    /// Enter at a prompt: checks what was typed, keeps it, and moves on (or runs the task).
    fn accept(&mut self, mut wizard: Wizard, step: Step, core: &Terminal) -> Effect {
        match self.take_input(&mut wizard, step, core) {
            Ok(()) => {
                wizard.error = None;
                wizard.input = Zeroizing::new(String::new());
                wizard.index += 1;
                if step == Step::Rrn && !wizard.draft.date_mmdd.is_empty() {
                    // Known sale: the date is prefilled; the cashier confirms it.
                    wizard.input = Zeroizing::new(wizard.draft.date_mmdd.clone());
                }
                if wizard.index >= wizard.steps(self.rules).len() {
                    return self.complete(wizard);
                }
                self.screen = Screen::Wizard(wizard);
                Effect::None
            }
            Err(error) => {
                wizard.error = Some(error);
                if step == Step::RepeatPassword {
                    // Both again.
                    wizard.index = wizard.index.saturating_sub(1);
                    wizard.draft.new_password = Zeroizing::new(String::new());
                }
                wizard.input = Zeroizing::new(String::new());
                self.screen = Screen::Wizard(wizard);
                Effect::None
            }
        }
    }

    fn take_input(&self, wizard: &mut Wizard, step: Step, core: &Terminal) -> Result<(), Note> {
        let input = wizard.input.as_str().to_owned();
        let input = Zeroizing::new(input);
        let draft = &mut wizard.draft;
        match step {
            Step::Amount if draft.amount_minor == 0 => {
                Err(Note::new("The amount must be more than 0.00", "金额必须大于0.00"))
            }
            Step::Amount | Step::Confirm | Step::Card => Ok(()),
            Step::Pin { required } => {
                if input.is_empty() && !required {
                    draft.pin = None;
                    return Ok(());
                }
                if (4..=12).contains(&input.len()) {
                    draft.pin = Some(input);
                    Ok(())
                } else {
                    Err(Note::new("A PIN is 4 to 12 digits", "密码为4至12位数字"))
                }
            }
            Step::PayCode if input.len() == PAYMENT_CODE_DIGITS => {
                draft.code = input;
                Ok(())
            }
            Step::PayCode => Err(Note::new("A payment code is 18 digits", "付款码为18位数字")),
            Step::PaycodePassword | Step::RefundPassword | Step::NewPassword if input.is_empty() => {
                Err(Note::new("Enter the password", "请输入密码"))
            }
            Step::PaycodePassword => {
                draft.paycode_password = Some(input);
                Ok(())
            }
            Step::RefundPassword => {
                draft.refund_password = input;
                Ok(())
            }
            Step::NewPassword => {
                draft.new_password = input;
                Ok(())
            }
            Step::RepeatPassword if input.as_str() == draft.new_password.as_str() => Ok(()),
            Step::RepeatPassword => {
                Err(Note::new("The two passwords differ: enter the new one again", "两次输入的密码不一致，请重新输入"))
            }
            Step::OldPassword { optional } => {
                if input.is_empty() && !optional {
                    return Err(Note::new("Enter the current password", "请输入原密码"));
                }
                draft.old_password = Some(input).filter(|old| !old.is_empty());
                Ok(())
            }
            Step::Stan { optional: true } if input.is_empty() => {
                draft.stan = None;
                Ok(())
            }
            Step::Stan { .. } => {
                let stan: u32 = input
                    .parse()
                    .ok()
                    .filter(|_| (1..=6).contains(&input.len()))
                    .ok_or_else(|| Note::new("A trace number (STAN) is 1 to 6 digits", "凭证号为1至6位数字"))?;
                draft.stan = Some(stan);
                if wizard.task == Task::Void {
                    let batch = core.journal_store().batch().unwrap_or(0);
                    match core.journal_store().by_stan(batch, stan) {
                        Ok(Some(sale))
                            if matches!(sale.kind.as_str(), "sale" | "offline_sale")
                                && sale.state.as_str() == "approved" =>
                        {
                            draft.amount_minor = sale.amount_minor;
                            draft.original = Some((sale.amount_minor, sale.pan_masked.clone()));
                        }
                        _ => {
                            return Err(Note::new(
                                format!("No approved sale with STAN {stan:06} in the open batch"),
                                format!("本批次无凭证号为{stan:06}的成功消费"),
                            ))
                        }
                    }
                }
                Ok(())
            }
            Step::Rrn if input.len() == 12 && input.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                draft.rrn = input.as_str().to_owned();
                if let Ok(Some(sale)) = core.journal_store().sale_by_rrn(&draft.rrn) {
                    // The date only: a refund is often partial, and the amount is typed fresh.
                    draft.date_mmdd = sale.date.clone();
                }
                Ok(())
            }
            Step::Rrn => Err(Note::new("A reference number (RRN) is 12 characters", "参考号为12位")),
            Step::Date if input.len() == 4 && input.bytes().all(|b| b.is_ascii_digit()) => {
                draft.date_mmdd = input.as_str().to_owned();
                Ok(())
            }
            Step::Date => Err(Note::new("The sale's date is MMDD, e.g. 0612", "原交易日期为MMDD，如0612")),
            Step::OutTradeNo if !input.is_empty() => {
                draft.out_trade_no = input.as_str().to_owned();
                Ok(())
            }
            Step::OutTradeNo => Err(Note::new("Enter the payment's trade reference", "请输入原交易订单号")),
            Step::OperatorCode if input.len() == 2 => {
                draft.operator_code = input.as_str().to_owned();
                Ok(())
            }
            Step::OperatorCode => Err(Note::new("An operator code is two digits", "操作员号为两位数字")),
            Step::Reason if !input.trim().is_empty() => {
                draft.reason = input.trim().to_owned();
                Ok(())
            }
            Step::Reason => Err(Note::new("Say why", "请输入原因")),
        }
    }

    /// The last prompt is answered: the core call (or, for a reprint, the slip).
    fn complete(&mut self, wizard: Wizard) -> Effect {
        let task = wizard.task;
        let draft = wizard.draft;
        let secret = |text: &Secret| Zeroizing::new(text.as_str().to_owned());
        let pan_masked = Some(kassa_receipt::mask_pan(&draft.pan)).filter(|_| !draft.pan.is_empty());
        let action = match task {
            Task::Sale => Action::Sale {
                amount_minor: draft.amount_minor,
                pan: secret(&draft.pan),
                entry: card_entry(draft.read_mode),
                pin: draft.pin,
            },
            Task::QrCollect => Action::QrPay {
                amount_minor: draft.amount_minor,
                code: secret(&draft.code),
                paycode_password: draft.paycode_password,
            },
            Task::MerchantQr => Action::QrShow { amount_minor: draft.amount_minor },
            Task::Void => Action::Void { stan: draft.stan.unwrap_or(0), refund_password: draft.refund_password },
            Task::Refund => Action::Refund {
                rrn: draft.rrn,
                amount_minor: draft.amount_minor,
                date_mmdd: draft.date_mmdd,
                refund_password: draft.refund_password,
            },
            Task::QrRefund => Action::QrRefund {
                out_trade_no: draft.out_trade_no,
                amount_minor: draft.amount_minor,
                paycode_password: draft.paycode_password,
            },
            Task::Balance => Action::Balance {
                pan: secret(&draft.pan),
                entry: card_entry(draft.read_mode),
                pin: draft.pin.unwrap_or_else(|| Zeroizing::new(String::new())),
            },
            Task::Settle => Action::Settle,
            Task::Reprint => Action::Reprint { reference: draft.stan.map(|stan| format!("{stan:06}")) },
            Task::OwnPassword { forced } => {
                let old = if forced { self.login_password.as_ref().map(secret) } else { draft.old_password };
                Action::ChangePassword { old: old.unwrap_or_default(), new: draft.new_password }
            }
            Task::RefundPassword => {
                Action::ChangeRefundPassword { old: draft.old_password.unwrap_or_default(), new: draft.new_password }
            }
            Task::PaycodePassword => Action::ChangePaycodePassword { old: draft.old_password, new: draft.new_password },
            Task::AddOperator => {
                Action::AddOperator { code: draft.operator_code, initial_password: draft.new_password }
            }
            Task::DisableOperator => Action::SetOperatorEnabled { code: draft.operator_code, enabled: false },
            Task::EnableOperator => Action::SetOperatorEnabled { code: draft.operator_code, enabled: true },
            Task::UnlockOperator => Action::UnlockOperator { code: draft.operator_code },
            Task::ResetOperator => Action::ResetOperator {
                code: draft.operator_code,
                new_password: draft.new_password,
                reason: draft.reason,
            },
            Task::Direct => return Effect::None,
        };
        let pan_masked = if matches!(task, Task::Void) { draft.original.map(|(_, pan)| pan) } else { pan_masked };
        self.run(task, action, pan_masked, None)
    }

    fn run(&mut self, task: Task, action: Action, pan_masked: Option<String>, operator: Option<String>) -> Effect {
        let amount_minor = match &action {
            Action::Sale { amount_minor, .. }
            | Action::QrPay { amount_minor, .. }
            | Action::Refund { amount_minor, .. }
            | Action::QrRefund { amount_minor, .. } => Some(*amount_minor),
            _ => None,
        };
        self.screen = match &action {
            Action::QrShow { amount_minor } => {
                Screen::MerchantQr { amount_minor: *amount_minor, code: None, cancelling: false }
            }
            _ => Screen::Busy { task, action: action.name(), amount_minor },
        };
        self.running = Some(Running { task, action: action.name(), pan_masked, operator });
        Effect::Run(action)
    }

    /// The merchant QR's code, as the core hands it over: drawn at once.
    pub fn show_qr_code(&mut self, text: &str) {
        if let Screen::MerchantQr { code, .. } = &mut self.screen {
            *code = Some(text.to_owned());
        }
    }

    /// The outcome of the running call: the next screen.
    pub fn finish(&mut self, outcome: Outcome, core: &Terminal) {
        self.last_activity = Instant::now();
        self.refresh(core);
        let Some(running) = self.running.take() else {
            self.back_to_menu(0);
            return;
        };
        match running.action {
            "login" => self.after_login(outcome, running.operator),
            "logout" => {
                self.status.operator = None;
                self.status.role = None;
                self.login_password = None;
                let ok = outcome.ok();
                self.screen = Screen::SignIn(SignInForm {
                    error: reason_note(&outcome).filter(|_| !ok),
                    ..SignInForm::default()
                });
            }
            "change-password" if running.task == (Task::OwnPassword { forced: true }) => {
                if outcome.ok() {
                    self.login_password = None;
                    self.notice = Some(Note::new("Password changed", "密码已修改"));
                    self.back_to_menu(0);
                } else {
                    let mut wizard = Wizard::new(running.task);
                    wizard.error = Some(reason_note(&outcome).unwrap_or_else(|| Note::new("refused", "未受理")));
                    self.screen = Screen::Wizard(wizard);
                }
            }
            "reprint" if outcome.ok() => match outcome.entry_id.and_then(|id| self.slip_of(id, core, true)) {
                Some(receipt) => {
                    self.show_receipt(receipt);
                    self.printed_note(&outcome);
                }
                None => self.back_to_menu(0),
            },
            _ => {
                if outcome.ok() && running.task.moves_money() {
                    self.bell = true;
                }
                self.screen = Screen::Result(ResultView {
                    task: running.task,
                    action: running.action,
                    outcome,
                    pan_masked: running.pan_masked,
                });
            }
        }
    }

    fn after_login(&mut self, outcome: Outcome, operator: Option<String>) {
        // The host accepted the operator when it named a role, even if the terminal's own
        // sign-in then failed (the next card request signs in again).
        if outcome.role.is_none() {
            self.login_password = None;
            self.screen = Screen::SignIn(SignInForm {
                error: Some(login_error(&outcome, self.options.utc_offset_minutes)),
                ..SignInForm::default()
            });
            return;
        }
        self.status.operator = operator;
        self.status.role = outcome.role.clone();
        if !outcome.ok() {
            self.notice = reason_note(&outcome);
        }
        if outcome.must_change_password == Some(true) {
            let mut wizard = Wizard::new(Task::OwnPassword { forced: true });
            wizard.error = Some(Note::new(
                "This is an initial password: choose a new one (4 to 8 digits)",
                "初始密码必须修改：请设置新密码（4至8位数字）",
            ));
            self.screen = Screen::Wizard(wizard);
        } else {
            self.login_password = None;
            self.back_to_menu(0);
        }
    }

    /// The slip of a journal row, as the core makes it; `None` for a row without one.
    fn slip_of(&self, id: i64, core: &Terminal, reprint: bool) -> Option<Receipt> {
        let entry: Entry = core.journal_store().entry(id).ok().flatten()?;
        let mut receipt = core.receipt(&entry).ok()?;
        receipt.reprint = reprint;
        Some(receipt)
    }

    fn show_receipt(&mut self, receipt: Receipt) {
        self.screen = Screen::Receipt(ReceiptView { receipt, copy: Copy::Merchant, scroll: 0, notice: None });
    }

    fn result_key(&mut self, view: ResultView, key: KeyEvent, core: &Terminal) -> Effect {
        let slip = view.outcome.entry_id.filter(|_| view.outcome.ok()).and_then(|id| self.slip_of(id, core, false));
        match (key.code, slip) {
            (KeyCode::Enter, Some(receipt)) => {
                self.show_receipt(receipt);
                Effect::None
            }
            (KeyCode::Char('p' | 'P'), Some(receipt)) => {
                let bytes = self.print_effect(&receipt);
                self.show_receipt(receipt);
                bytes
            }
            (KeyCode::Enter | KeyCode::Esc, None) | (KeyCode::Esc, Some(_)) => {
                let page = if view.task == Task::Direct
                    || !view.task.moves_money() && view.task != Task::Settle && view.task != Task::Balance
                {
                    1
                } else {
                    0
                };
                self.back_to_menu(page);
                Effect::None
            }
            _ => {
                self.screen = Screen::Result(view);
                Effect::None
            }
        }
    }

    fn print_effect(&self, receipt: &Receipt) -> Effect {
        if self.status.printer {
            Effect::Print(Box::new(receipt.clone()))
        } else {
            Effect::None
        }
    }

    fn receipt_key(&mut self, mut view: ReceiptView, key: KeyEvent) -> Effect {
        let mut effect = Effect::None;
        match key.code {
            KeyCode::Enter | KeyCode::Esc => {
                self.back_to_menu(0);
                return Effect::None;
            }
            KeyCode::Up => view.scroll = view.scroll.saturating_sub(1),
            KeyCode::Down => view.scroll = view.scroll.saturating_add(1).min(200),
            KeyCode::PageUp => view.scroll = view.scroll.saturating_sub(10),
            KeyCode::PageDown => view.scroll = view.scroll.saturating_add(10).min(200),
            KeyCode::Char('c' | 'C') => {
                view.copy = match view.copy {
                    Copy::Merchant => Copy::Customer,
                    Copy::Customer => Copy::Merchant,
                };
                view.scroll = 0;
            }
            KeyCode::Char('p' | 'P') => {
                effect = self.print_effect(&view.receipt);
                if effect == Effect::None {
                    view.notice = Some(Note::new("No printer is configured (--printer)", "未配置打印机（--printer）"));
                }
            }
            _ => {}
        }
        self.screen = Screen::Receipt(view);
        effect
    }

    fn printed_note(&mut self, outcome: &Outcome) {
        match (outcome.printed, &outcome.print_error) {
            (Some(true), _) => self.printed(Ok(())),
            (Some(false), why) => self.printed(Err(why.clone().unwrap_or_default())),
            (None, _) => {}
        }
    }

    /// What the printer said.
    pub fn printed(&mut self, result: Result<(), String>) {
        if let Screen::Receipt(view) = &mut self.screen {
            view.notice = Some(match result {
                Ok(()) => Note::new("Printed", "已打印"),
                Err(why) => Note::new(format!("Not printed: {why}"), format!("打印失败：{why}")),
            });
        }
    }

    fn query_key(&mut self, mut view: QueryView, key: KeyEvent, core: &Terminal) -> Effect {
        let count = view.rows.len();
        match key.code {
            KeyCode::Esc => {
                self.back_to_menu(0);
                return Effect::None;
            }
            KeyCode::Up if count > 0 => view.selected = view.selected.checked_sub(1).unwrap_or(count - 1),
            KeyCode::Down if count > 0 => view.selected = (view.selected + 1) % count,
            KeyCode::Enter => match view.rows.get(view.selected).and_then(|row| self.slip_of(row.id, core, true)) {
                Some(receipt) => {
                    self.show_receipt(receipt);
                    return Effect::None;
                }
                None => view.error = Some(Note::new("No slip for this row (not approved)", "该笔交易无签购单")),
            },
            _ => {}
        }
        self.screen = Screen::Query(view);
        Effect::None
    }

    /// One key with the core at hand: the key, and when it asks for a core call, the call and
    /// its outcome. The run loop does the same while drawing; tests drive the App with it.
    pub async fn step(&mut self, core: &mut Terminal, key: KeyEvent) -> Effect {
        let effect = self.handle_key(key, core);
        if let Effect::Run(action) = &effect {
            core.set_lang(self.lang);
            let mut codes = Vec::new();
            let outcome = {
                let mut on_code = |code: &str| codes.push(code.to_owned());
                execute(core, action, &mut on_code, &CancellationToken::new()).await
            };
            for code in &codes {
                self.show_qr_code(code);
            }
            self.finish(outcome, core);
        }
        effect
    }
}

fn accepts(step: Step, c: char, typed: usize) -> bool {
    match step {
        Step::Pin { .. } => c.is_ascii_digit() && typed < 12,
        Step::PayCode => c.is_ascii_digit() && typed < PAYMENT_CODE_DIGITS,
        Step::Stan { .. } => c.is_ascii_digit() && typed < 6,
        Step::Date => c.is_ascii_digit() && typed < 4,
        Step::OperatorCode => c.is_ascii_digit() && typed < 2,
        Step::Rrn => c.is_ascii_alphanumeric() && typed < 12,
        Step::OutTradeNo => c.is_ascii_graphic() && c != '/' && typed < TEXT_CHARS_MAX,
        Step::Reason => !c.is_control() && typed < TEXT_CHARS_MAX,
        Step::PaycodePassword
        | Step::RefundPassword
        | Step::OldPassword { .. }
        | Step::NewPassword
        | Step::RepeatPassword => c.is_ascii_graphic() && typed < SECRET_CHARS_MAX,
        Step::Amount | Step::Confirm | Step::Card => false,
    }
}

/// The receipt crate's language for the screen's.
pub fn receipt_lang(lang: Lang) -> kassa_receipt::Lang {
    match lang {
        Lang::En => kassa_receipt::Lang::En,
        Lang::Zh => kassa_receipt::Lang::Zh,
    }
}

/// `HH:MM` local time of a Unix ms instant.
pub fn clock(unix_ms: i64, utc_offset_minutes: i32) -> String {
    let time = kassa_domain::calendar::CivilTime::at(unix_ms, utc_offset_minutes);
    format!("{:02}:{:02}", time.hour, time.minute)
}

/// How the core is told the card was read (a number typed without the reader is keyed).
fn card_entry(mode: Option<ReadMode>) -> kassa_terminal::terminal::CardEntry {
    use kassa_terminal::terminal::CardEntry;
    match mode {
        Some(ReadMode::Swipe) => CardEntry::Swipe,
        Some(ReadMode::Insert) => CardEntry::Insert,
        Some(ReadMode::Tap) => CardEntry::Tap,
        Some(ReadMode::Keyed) | None => CardEntry::Keyed,
    }
}

fn login_error(outcome: &Outcome, utc_offset_minutes: i32) -> Note {
    if let Some(until) = outcome.locked_until_ms {
        let at = clock(until, utc_offset_minutes);
        return Note::new(
            format!("Operator locked until {at}: the supervisor can unlock it"),
            format!("操作员已锁定，{at} 自动解锁；主管可解锁"),
        );
    }
    let why = outcome.error.clone().unwrap_or_else(|| "refused".into());
    match (outcome.status.clone(), outcome.attempts_left) {
        (Status::NoNetwork, _) => Note::new(format!("No network: {why}"), format!("网络不通：{why}")),
        (_, Some(left)) => Note::new(
            format!("Wrong operator code or password ({left} tries left)"),
            format!("操作员号或密码错误（还可尝试{left}次）"),
        ),
        _ => reason_note(outcome).unwrap_or_else(|| Note::same(why)),
    }
}

/// The core's reason in both languages ([`Outcome::reason`]: Chinese for the common refusals and
/// declines, the English text for the rest).
fn reason_note(outcome: &Outcome) -> Option<Note> {
    match (outcome.reason(Lang::En), outcome.reason(Lang::Zh)) {
        (Some(en), Some(zh)) => Some(Note::new(en, zh)),
        (Some(text), None) | (None, Some(text)) => Some(Note::same(text)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_card_numbers_are_masked_between_the_first_six_and_last_four() {
        assert_eq!(mask_typed_pan("622202"), "622202");
        assert_eq!(mask_typed_pan("62220212"), "622202**");
        assert_eq!(mask_typed_pan("6222021234567890128"), "622202*********0128");
        assert_eq!(mask_typed_pan("62220212345"), "622202*2345");
    }
}

/// Debug of the screen's parts: their kind and non-secret facts only (never typed secrets nor
/// card numbers).
macro_rules! debug_name_only {
    ($($name:ident),*) => {$(
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    )*};
}

debug_name_only!(Draft, SignInForm, ResultView, ReceiptView, QueryView);

impl std::fmt::Debug for Wizard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wizard").field("task", &self.task).field("index", &self.index).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Screen::SignIn(_) => f.write_str("SignIn"),
            Screen::Menu { page, selected } => write!(f, "Menu {{ page: {page}, selected: {selected} }}"),
            Screen::Wizard(wizard) => write!(f, "{wizard:?}"),
            Screen::Operators { selected } => write!(f, "Operators {{ selected: {selected} }}"),
            Screen::Busy { action, .. } => write!(f, "Busy({action})"),
            Screen::MerchantQr { amount_minor, .. } => write!(f, "MerchantQr({amount_minor})"),
            Screen::Result(view) => write!(f, "Result({})", view.action),
            Screen::Receipt(_) => f.write_str("Receipt"),
            Screen::Query(view) => write!(f, "Query({} rows)", view.rows.len()),
        }
    }
}
