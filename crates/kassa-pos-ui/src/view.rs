//! The screens: a thin view of the [`App`]'s state. Nothing here decides anything; every text
//! is picked in the language of the moment, so switching language re-renders everything.
//!
//! Layout (80x24 and larger): a title line, the body, a line of key hints, the status bar.

use kassa_terminal::{meaning, Lang, Status, TEST_CARDS};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use crate::app::{
    clock, mask_typed_pan, receipt_lang, App, Item, QueryView, ReadMode, ReceiptView, ResultView, Screen, SignInForm,
    Step, Task, Wizard, MENU_PAGES, OPERATOR_TASKS,
};
use crate::text::{card_behaviour, kind_name, money, pick, state_name};

const TITLE: Style = Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD);
const STATUS: Style = Style::new().fg(Color::Black).bg(Color::Gray);
const HIGHLIGHT: Style = Style::new().add_modifier(Modifier::REVERSED);
const ERROR: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const GOOD: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
const HINT: Style = Style::new().fg(Color::DarkGray);
/// Dark modules on light: a QR code (or a slip) drawn as on paper.
const PAPER: Style = Style::new().fg(Color::Black).bg(Color::White);

/// The name of a menu item.
pub fn item_name(lang: Lang, item: Item) -> &'static str {
    match item {
        Item::Sale => pick(lang, "Sale", "消费"),
        Item::QrCollect => pick(lang, "QR collect (customer code)", "扫码收款"),
        Item::MerchantQr => pick(lang, "Merchant QR", "商户收款码"),
        Item::Void => pick(lang, "Void", "撤销"),
        Item::Refund => pick(lang, "Refund", "退货"),
        Item::QrRefund => pick(lang, "QR refund", "扫码退款"),
        Item::Balance => pick(lang, "Balance inquiry", "余额查询"),
        Item::Settle => pick(lang, "Settlement", "结算"),
        Item::Reprint => pick(lang, "Reprint", "重打印"),
        Item::Query => pick(lang, "Transaction query", "交易查询"),
        Item::Operators => pick(lang, "Operators (supervisor)", "操作员管理（主管）"),
        Item::OwnPassword => pick(lang, "Change my password", "修改密码"),
        Item::RefundPassword => pick(lang, "Refund password (supervisor)", "退款密码（主管）"),
        Item::PaycodePassword => pick(lang, "Payment-code password (supervisor)", "付款码密码（主管）"),
        Item::Parameters => pick(lang, "Parameter download", "参数下载"),
        Item::Network => pick(lang, "Offline / online", "离线/联机"),
        Item::SendUnsent => pick(lang, "Send unsent items", "上送未发送交易"),
        Item::SignIn => pick(lang, "Terminal sign-in", "签到"),
        Item::SignOut => pick(lang, "Sign out", "签退"),
    }
}

/// The name of a task.
pub fn task_name(lang: Lang, task: Task) -> &'static str {
    match task {
        Task::Sale => pick(lang, "Sale", "消费"),
        Task::QrCollect => pick(lang, "QR collect", "扫码收款"),
        Task::MerchantQr => pick(lang, "Merchant QR", "商户收款码"),
        Task::Void => pick(lang, "Void", "撤销"),
        Task::Refund => pick(lang, "Refund", "退货"),
        Task::QrRefund => pick(lang, "QR refund", "扫码退款"),
        Task::Balance => pick(lang, "Balance inquiry", "余额查询"),
        Task::Settle => pick(lang, "Settlement", "结算"),
        Task::Reprint => pick(lang, "Reprint", "重打印"),
        Task::OwnPassword { .. } => pick(lang, "Change password", "修改密码"),
        Task::RefundPassword => pick(lang, "Refund password", "修改退款密码"),
        Task::PaycodePassword => pick(lang, "Payment-code password", "付款码密码"),
        Task::AddOperator => pick(lang, "Add an operator", "增加操作员"),
        Task::DisableOperator => pick(lang, "Disable an operator", "停用操作员"),
        Task::EnableOperator => pick(lang, "Enable an operator", "启用操作员"),
        Task::UnlockOperator => pick(lang, "Unlock an operator", "解锁操作员"),
        Task::ResetOperator => pick(lang, "Reset an operator's password", "重置操作员密码"),
        Task::Direct => pick(lang, "Terminal", "终端"),
    }
}

fn action_title(lang: Lang, action: &str) -> &'static str {
    match action {
        "parameters" => pick(lang, "Parameter download", "参数下载"),
        "offline" => pick(lang, "Offline / online", "离线/联机"),
        "flush" => pick(lang, "Send unsent items", "上送未发送交易"),
        "sign-in" => pick(lang, "Terminal sign-in", "签到"),
        "logout" => pick(lang, "Sign out", "签退"),
        "login" => pick(lang, "Operator sign-in", "操作员签到"),
        _ => pick(lang, "Terminal", "终端"),
    }
}

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let [title, body, hints, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1), Constraint::Length(1)])
            .areas(frame.area());
    let lang = app.lang;
    let merchant =
        if app.status.merchant_name.is_empty() { String::new() } else { format!("  {}", app.status.merchant_name) };
    let heading = format!(" Kassa POS{merchant}");
    frame.render_widget(Paragraph::new(heading).style(TITLE), title);
    frame.render_widget(Clear, body);
    let hint = match &app.screen {
        Screen::SignIn(form) => sign_in(frame, body, lang, form),
        Screen::Menu { page, selected } => menu(frame, body, app, *page, *selected),
        Screen::Wizard(wizard) => wizard_view(frame, body, app, wizard),
        Screen::Operators { selected } => operators(frame, body, lang, *selected),
        Screen::Busy { task, action, amount_minor } => busy(frame, body, lang, *task, action, *amount_minor),
        Screen::MerchantQr { amount_minor, code, cancelling } => {
            merchant_qr(frame, body, lang, *amount_minor, code.as_deref(), *cancelling)
        }
        Screen::Result(view) => result(frame, body, app, view),
        Screen::Receipt(view) => receipt(frame, body, lang, view),
        Screen::Query(view) => query(frame, body, lang, view),
    };
    let switch = pick(lang, "  F2 中文", "  F2 English");
    frame.render_widget(Paragraph::new(format!(" {hint}{switch}")).style(HINT), hints);
    status_bar(frame, status, app);
}

fn status_bar(frame: &mut Frame, area: Rect, app: &App) {
    let lang = app.lang;
    let status = &app.status;
    let operator = status.operator.as_deref().unwrap_or("--");
    let network = if status.offline { pick(lang, "OFFLINE", "离线") } else { pick(lang, "online", "联机") };
    let text = format!(
        " {} {} │ {} {} │ {} │ {} {} │ {}",
        pick(lang, "TID", "终端"),
        status.terminal_id,
        pick(lang, "Operator", "操作员"),
        operator,
        network,
        pick(lang, "Unsent", "未上送"),
        status.unsent,
        pick(lang, "English", "中文"),
    );
    frame.render_widget(Paragraph::new(text).style(STATUS), area);
}

/// `label` padded with spaces to `columns` display columns (CJK characters take two).
fn padded(label: &str, columns: usize) -> String {
    let width = unicode_width::UnicodeWidthStr::width(label);
    format!("{label}{}", " ".repeat(columns.saturating_sub(width)))
}

fn framed<'a>(title: String) -> Block<'a> {
    Block::default().borders(Borders::ALL).title(format!(" {title} "))
}

fn error_line(lang: Lang, error: Option<&crate::text::Note>) -> Line<'static> {
    match error {
        Some(note) => Line::styled(note.get(lang).to_owned(), ERROR),
        None => Line::raw(""),
    }
}

fn sign_in(frame: &mut Frame, area: Rect, lang: Lang, form: &SignInForm) -> &'static str {
    let cursor = |field: usize| if form.field == field { "_" } else { "" };
    let mark =
        |field: usize| if form.field == field { Style::new().add_modifier(Modifier::BOLD) } else { Style::new() };
    let lines = vec![
        Line::raw(""),
        Line::raw(pick(lang, "  Sign in to take payments.", "  请操作员签到。")),
        Line::raw(""),
        Line::styled(
            format!("  {}  {}{}", pick(lang, "Operator code:", "操作员号："), form.operator, cursor(0)),
            mark(0),
        ),
        Line::styled(
            format!(
                "  {}  {}{}",
                pick(lang, "Password:     ", "密码：    "),
                "*".repeat(form.password.chars().count()),
                cursor(1)
            ),
            mark(1),
        ),
        Line::raw(""),
        error_line(lang, form.error.as_ref()),
    ];
    let title = pick(lang, "Operator sign-in", "操作员签到");
    frame.render_widget(Paragraph::new(lines).block(framed(title.into())).wrap(Wrap { trim: false }), area);
    pick(lang, "Enter next/sign in  Tab field  Esc clear  Ctrl-C quit", "Enter 确认  Tab 切换  Esc 清除  Ctrl-C 退出")
}

fn menu(frame: &mut Frame, area: Rect, app: &App, page: usize, selected: usize) -> &'static str {
    let lang = app.lang;
    let items = MENU_PAGES.get(page).copied().unwrap_or(MENU_PAGES[0]);
    let mut lines = vec![Line::raw("")];
    for (index, item) in items.iter().enumerate() {
        let key = if index == 9 { 0 } else { index + 1 };
        let text = format!("  {key}  {}  ", item_name(lang, *item));
        let style = if index == selected { HIGHLIGHT } else { Style::new() };
        lines.push(Line::styled(text, style));
    }
    lines.push(Line::raw(""));
    if let Some(notice) = &app.notice {
        lines.push(Line::styled(format!("  {}", notice.get(lang)), ERROR));
    }
    let title = match (page, lang) {
        (0, Lang::En) => "Main menu (1/2)".to_owned(),
        (0, Lang::Zh) => "主菜单（1/2）".to_owned(),
        (_, Lang::En) => "Main menu (2/2): management".to_owned(),
        (_, Lang::Zh) => "主菜单（2/2）：管理".to_owned(),
    };
    frame.render_widget(Paragraph::new(lines).block(framed(title)), area);
    pick(lang, "1-9,0 choose  ↑↓ Enter  ←→ page  Ctrl-C quit", "1-9,0 选择  ↑↓ Enter  ←→ 翻页  Ctrl-C 退出")
}

fn masked(text: &str) -> String {
    "*".repeat(text.chars().count())
}

fn prompt_of(lang: Lang, step: Step, task: Task) -> &'static str {
    match step {
        Step::Amount => pick(lang, "Enter the amount:", "请输入金额："),
        Step::Confirm => pick(lang, "Please confirm:", "请确认："),
        Step::Card => pick(lang, "Swipe, insert or tap a card:", "请刷卡/插卡/挥卡："),
        Step::Pin { .. } => pick(lang, "Cardholder, enter the PIN:", "请持卡人输入密码："),
        Step::PayCode => pick(lang, "Scan the customer's payment code:", "请扫描顾客付款码："),
        Step::PaycodePassword => pick(lang, "Payment-code password:", "请输入付款码密码："),
        Step::Stan { optional: true } => {
            pick(lang, "Trace number (STAN), empty for the last:", "凭证号（直接确认打印最后一笔）：")
        }
        Step::Stan { optional: false } => pick(lang, "Trace number (STAN) of the sale:", "请输入原交易凭证号："),
        Step::Rrn => pick(lang, "Reference number (RRN) of the sale:", "请输入原交易参考号："),
        Step::Date => pick(lang, "Date of the sale (MMDD):", "请输入原交易日期（MMDD）："),
        Step::OutTradeNo => pick(lang, "Trade reference of the QR payment:", "请输入原交易订单号："),
        Step::RefundPassword => pick(lang, "Refund password:", "请输入退款密码："),
        Step::OldPassword { optional: true } => {
            pick(lang, "Current password (empty if none yet):", "原密码（未设置则直接确认）：")
        }
        Step::OldPassword { optional: false } => pick(lang, "Current password:", "请输入原密码："),
        Step::NewPassword if matches!(task, Task::AddOperator | Task::ResetOperator) => {
            pick(lang, "Initial password:", "请输入初始密码：")
        }
        Step::NewPassword => pick(lang, "New password:", "请输入新密码："),
        Step::RepeatPassword => pick(lang, "New password again:", "请再次输入新密码："),
        Step::OperatorCode => pick(lang, "Operator code:", "请输入操作员号："),
        Step::Reason => pick(lang, "Reason:", "原因："),
    }
}

fn wizard_view(frame: &mut Frame, area: Rect, app: &App, wizard: &Wizard) -> &'static str {
    let lang = app.lang;
    let Some(step) = wizard.step(app.rules) else { return "" };
    let mut lines = vec![Line::raw("")];
    let draft = &wizard.draft;
    if step != Step::Amount && draft.amount_minor > 0 && step != Step::Confirm {
        lines.push(Line::raw(format!("  {}  {}", task_name(lang, wizard.task), money(lang, draft.amount_minor))));
        lines.push(Line::raw(""));
    }
    if let (Some(mode), false) = (draft.read_mode, draft.pan.is_empty()) {
        let card = kassa_receipt::mask_pan(&draft.pan);
        lines.push(Line::raw(format!("  {} {card} ({})", pick(lang, "Card:", "卡号："), read_mode_name(lang, mode))));
        lines.push(Line::raw(""));
    }
    lines.push(Line::raw(format!("  {}", prompt_of(lang, step, wizard.task))));
    lines.push(Line::raw(""));
    let input = wizard.input.as_str();
    let mut hint = pick(lang, "Enter confirm  Esc cancel", "Enter 确认  Esc 取消");
    match step {
        Step::Amount => {
            lines.push(Line::styled(format!("      {}", money(lang, draft.amount_minor)), GOOD));
            hint = pick(
                lang,
                "digits  Backspace correct  Enter confirm  Esc cancel",
                "数字键输入  退格 更正  Enter 确认  Esc 取消",
            );
        }
        Step::Confirm => confirm_lines(&mut lines, app, wizard),
        Step::Card => {
            hint = card_lines(&mut lines, lang, wizard);
        }
        Step::Pin { required } => {
            lines.push(Line::styled(format!("      {}_", masked(input)), GOOD));
            if !required {
                lines.push(Line::raw(""));
                lines.push(Line::styled(
                    pick(lang, "  (Enter without digits: no PIN)", "  （不输密码直接按 Enter）"),
                    HINT,
                ));
            }
        }
        Step::PayCode => {
            let shown: String = input.chars().enumerate().map(|(i, c)| if i < 2 { c } else { '*' }).collect();
            lines.push(Line::styled(format!("      {shown}_"), GOOD));
        }
        Step::PaycodePassword
        | Step::RefundPassword
        | Step::OldPassword { .. }
        | Step::NewPassword
        | Step::RepeatPassword => lines.push(Line::styled(format!("      {}_", masked(input)), GOOD)),
        Step::Stan { .. } | Step::Rrn | Step::Date | Step::OutTradeNo | Step::OperatorCode | Step::Reason => {
            lines.push(Line::styled(format!("      {input}_"), GOOD))
        }
    }
    lines.push(Line::raw(""));
    lines.push(error_line(lang, wizard.error.as_ref()));
    let title = task_name(lang, wizard.task);
    frame.render_widget(Paragraph::new(lines).block(framed(title.into())).wrap(Wrap { trim: false }), area);
    hint
}

fn confirm_lines(lines: &mut Vec<Line<'static>>, app: &App, wizard: &Wizard) {
    let lang = app.lang;
    let draft = &wizard.draft;
    let row = |label: &str, value: String| Line::raw(format!("    {}{value}", padded(label, 12)));
    lines.push(row(pick(lang, "Kind:", "交易类型："), task_name(lang, wizard.task).to_owned()));
    match wizard.task {
        Task::Settle => {
            let open = app.status.unsent;
            lines.push(row(pick(lang, "Unsent:", "未上送："), open.to_string()));
            lines.push(Line::raw(""));
            lines.push(Line::raw(pick(
                lang,
                "    Everything unsent is sent first; the batch then closes.",
                "    先上送未发送交易，然后结算并关闭本批次。",
            )));
        }
        Task::DisableOperator | Task::EnableOperator | Task::UnlockOperator => {
            lines.push(row(pick(lang, "Operator:", "操作员："), draft.operator_code.clone()));
        }
        _ => {
            lines.push(Line::styled(
                format!("    {}{}", padded(pick(lang, "Amount:", "金额："), 12), money(lang, draft.amount_minor)),
                GOOD,
            ));
            if let Some((_, pan)) = &draft.original {
                lines.push(row(pick(lang, "Card:", "卡号："), kassa_receipt::mask_pan(pan)));
            }
            if let Some(stan) = draft.stan {
                lines.push(row(pick(lang, "STAN:", "凭证号："), format!("{stan:06}")));
            }
            if !draft.rrn.is_empty() {
                lines.push(row(pick(lang, "RRN:", "参考号："), draft.rrn.clone()));
            }
            if !draft.out_trade_no.is_empty() {
                lines.push(row(pick(lang, "Trade:", "订单号："), draft.out_trade_no.clone()));
            }
        }
    }
}

fn card_lines(lines: &mut Vec<Line<'static>>, lang: Lang, wizard: &Wizard) -> &'static str {
    if wizard.keying {
        lines.push(Line::raw(format!("  {}", pick(lang, "Key the card number:", "手输卡号："))));
        lines.push(Line::styled(format!("      {}_", mask_typed_pan(&wizard.input)), GOOD));
        return pick(lang, "digits  Enter confirm  Esc back to the reader", "数字键输入  Enter 确认  Esc 返回读卡");
    }
    for (index, (pan, expiry)) in TEST_CARDS.iter().enumerate() {
        let text =
            format!("  {}  {}  {}  {}", index + 1, kassa_receipt::mask_pan(pan), expiry, card_behaviour(lang, pan));
        let style = if index == wizard.card { HIGHLIGHT } else { Style::new() };
        lines.push(Line::styled(text, style));
    }
    pick(
        lang,
        "1-6/↑↓ card  S swipe  I insert  T tap  K key number  Esc cancel",
        "1-6/↑↓ 选卡  S 刷卡  I 插卡  T 挥卡  K 手输卡号  Esc 取消",
    )
}

fn operators(frame: &mut Frame, area: Rect, lang: Lang, selected: usize) -> &'static str {
    let mut lines = vec![Line::raw("")];
    for (index, task) in OPERATOR_TASKS.iter().enumerate() {
        let style = if index == selected { HIGHLIGHT } else { Style::new() };
        lines.push(Line::styled(format!("  {}  {}  ", index + 1, task_name(lang, *task)), style));
    }
    let title = pick(lang, "Operators", "操作员管理");
    frame.render_widget(Paragraph::new(lines).block(framed(title.into())), area);
    pick(lang, "1-5 choose  ↑↓ Enter  Esc back", "1-5 选择  ↑↓ Enter  Esc 返回")
}

fn busy(
    frame: &mut Frame,
    area: Rect,
    lang: Lang,
    task: Task,
    action: &str,
    amount_minor: Option<u64>,
) -> &'static str {
    let title = if task == Task::Direct { action_title(lang, action) } else { task_name(lang, task) };
    let mut lines = vec![
        Line::raw(""),
        Line::styled(format!("  {}", pick(lang, "Processing, please wait…", "处理中，请稍候…")), GOOD),
    ];
    if let Some(amount) = amount_minor {
        lines.push(Line::raw(""));
        lines.push(Line::raw(format!("  {}  {}", title, money(lang, amount))));
    }
    if task == Task::QrCollect {
        lines.push(Line::raw(""));
        lines.push(Line::raw(pick(
            lang,
            "  The customer may have to confirm on the phone.",
            "  顾客可能需要在手机上确认付款。",
        )));
    }
    frame.render_widget(Paragraph::new(lines).block(framed(title.into())), area);
    pick(lang, "please wait", "请稍候")
}

fn merchant_qr(
    frame: &mut Frame,
    area: Rect,
    lang: Lang,
    amount_minor: u64,
    code: Option<&str>,
    cancelling: bool,
) -> &'static str {
    let title = task_name(lang, Task::MerchantQr);
    let block = framed(title.into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let qr = code.map(kassa_receipt::qr_lines).unwrap_or_default();
    let qr_width = qr.first().map_or(0, |line| line.chars().count());
    let qr_width = u16::try_from(qr_width).unwrap_or(u16::MAX);
    let [text_area, qr_area] = Layout::horizontal([Constraint::Min(20), Constraint::Length(qr_width)]).areas(inner);
    let mut lines = vec![Line::raw(""), Line::styled(format!(" {}", money(lang, amount_minor)), GOOD), Line::raw("")];
    match code {
        _ if cancelling => lines.push(Line::styled(pick(lang, " Cancelling the order…", " 正在关闭订单…"), ERROR)),
        None => lines.push(Line::raw(pick(lang, " Creating the order…", " 正在下单…"))),
        Some(_) => {
            lines.push(Line::raw(pick(lang, " Ask the customer to scan", " 请顾客用支付宝或")));
            lines.push(Line::raw(pick(lang, " with Alipay or WeChat.", " 微信扫码付款。")));
            lines.push(Line::raw(""));
            lines.push(Line::raw(pick(lang, " Waiting for the payment…", " 等待付款…")));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
    if !qr.is_empty() {
        // The quiet zone's blank rows go first when the screen is short.
        let rows = usize::from(qr_area.height);
        let skip = qr.len().saturating_sub(rows).div_ceil(2);
        let shown: Vec<Line> = qr.iter().skip(skip).take(rows).map(|line| Line::raw(line.clone())).collect();
        frame.render_widget(Paragraph::new(shown).style(PAPER), qr_area);
    }
    pick(lang, "Esc cancel", "Esc 取消")
}

fn result_title(lang: Lang, view: &ResultView) -> (String, Style) {
    let outcome = &view.outcome;
    let money_task = view.task.moves_money() || view.task == Task::Balance;
    match outcome.status {
        Status::Done if outcome.offline => (pick(lang, "APPROVED OFFLINE", "离线交易成功").into(), GOOD),
        Status::Done if money_task => (pick(lang, "APPROVED", "交易成功").into(), GOOD),
        Status::Done => (pick(lang, "DONE", "操作成功").into(), GOOD),
        Status::Declined if outcome.error.as_deref().is_some_and(|why| why.starts_with("cancelled")) => {
            (pick(lang, "CANCELLED", "已取消").into(), ERROR)
        }
        Status::Declined => (pick(lang, "DECLINED", "交易失败").into(), ERROR),
        Status::Refused => (pick(lang, "NOT DONE", "未受理").into(), ERROR),
        Status::NoNetwork => (pick(lang, "NO NETWORK", "网络不通").into(), ERROR),
        Status::NoAnswer => (pick(lang, "NO ANSWER", "主机无应答").into(), ERROR),
    }
}

fn result(frame: &mut Frame, area: Rect, app: &App, view: &ResultView) -> &'static str {
    let lang = app.lang;
    let outcome = &view.outcome;
    let (title, style) = result_title(lang, view);
    let mut lines = vec![Line::raw(""), Line::styled(format!("  {title}"), style), Line::raw("")];
    let mut row = |label: &str, value: String| lines.push(Line::raw(format!("  {}{value}", padded(label, 12))));
    if let Some(amount) = outcome.amount_minor {
        row(pick(lang, "Amount:", "金额："), money(lang, amount));
    }
    if let Some(pan) = view.pan_masked.as_ref().or(outcome.pan_masked.as_ref()) {
        row(pick(lang, "Card:", "卡号："), kassa_receipt::mask_pan(pan));
    }
    if let Some(code) = &outcome.response_code {
        row(pick(lang, "Response:", "应答码："), format!("{code} {}", meaning(code, lang)));
    }
    if let Some(stan) = outcome.stan {
        row(pick(lang, "STAN:", "凭证号："), format!("{stan:06}"));
    }
    if let Some(batch) = outcome.batch {
        row(pick(lang, "Batch:", "批次号："), format!("{batch:06}"));
    }
    if let Some(rrn) = &outcome.rrn {
        row(pick(lang, "RRN:", "参考号："), rrn.clone());
    }
    if let Some(auth) = &outcome.auth_code {
        row(pick(lang, "Auth code:", "授权码："), auth.clone());
    }
    if let Some(date) = &outcome.date {
        row(pick(lang, "Date:", "日期："), date.clone());
    }
    if let Some(balance) = outcome.balance_minor {
        let sign = if balance < 0 { "-" } else { "" };
        row(pick(lang, "Balance:", "余额："), format!("{sign}{}", money(lang, balance.unsigned_abs())));
    }
    if let Some(wallet) = &outcome.wallet {
        row(pick(lang, "Wallet:", "钱包："), wallet.clone());
    }
    if let Some(trade) = &outcome.out_trade_no {
        row(pick(lang, "Trade ref:", "订单号："), trade.clone());
    }
    if let Some(balanced) = outcome.balanced {
        let text = if balanced {
            pick(lang, "balanced", "对账平")
        } else {
            pick(lang, "unbalanced: batch uploaded", "对账不平，已批上送")
        };
        row(pick(lang, "Settlement:", "结算："), text.to_owned());
    }
    if let Some(sent) = outcome.sent {
        row(pick(lang, "Sent:", "已上送："), sent.to_string());
    }
    if view.action == "parameters" && outcome.ok() {
        if let Some(parameters) = &outcome.details {
            row(pick(lang, "Merchant:", "商户："), parameters["merchant_name"].as_str().unwrap_or_default().to_owned());
            let floor = parameters["offline_floor_limit_minor"].as_u64().unwrap_or(0);
            row(pick(lang, "Floor limit:", "离线限额："), money(lang, floor));
        }
    }
    if view.action == "offline" {
        let state = if app.status.offline { pick(lang, "offline", "离线") } else { pick(lang, "online", "联机") };
        row(pick(lang, "Network:", "网络："), state.to_owned());
    }
    if let Some(until) = outcome.locked_until_ms {
        let at = clock(until, app.options.utc_offset_minutes);
        lines.push(Line::styled(format!("  {} {at}", pick(lang, "Locked until", "锁定至")), ERROR));
    }
    if let Some(left) = outcome.attempts_left {
        lines.push(Line::styled(format!("  {} {left}", pick(lang, "Tries left:", "剩余尝试次数：")), ERROR));
    }
    match (outcome.printed, &outcome.print_error) {
        (Some(true), _) => lines.push(Line::raw(format!("  {}", pick(lang, "Slips printed.", "签购单已打印。")))),
        (Some(false), why) => lines.push(Line::styled(
            format!("  {} {}", pick(lang, "Not printed:", "未打印："), why.as_deref().unwrap_or_default()),
            ERROR,
        )),
        (None, _) => {}
    }
    lines.push(Line::raw(""));
    for line in explanation(lang, view) {
        lines.push(Line::styled(format!("  {line}"), if outcome.ok() { Style::new() } else { ERROR }));
    }
    let title = if view.task == Task::Direct { action_title(lang, view.action) } else { task_name(lang, view.task) };
    frame.render_widget(Paragraph::new(lines).block(framed(title.into())).wrap(Wrap { trim: false }), area);
    let has_slip = outcome.ok() && outcome.entry_id.is_some();
    match (has_slip, app.status.printer) {
        (true, true) => pick(lang, "Enter slip  P print  Esc menu", "Enter 签购单  P 打印  Esc 返回"),
        (true, false) => pick(lang, "Enter slip  Esc menu", "Enter 签购单  Esc 返回"),
        _ => pick(lang, "Enter/Esc menu", "Enter/Esc 返回"),
    }
}

/// What the cashier should know beyond the fields: why it failed and what happens next.
fn explanation(lang: Lang, view: &ResultView) -> Vec<String> {
    let outcome = &view.outcome;
    // The core's reason in the screen's language (English where it has no Chinese wording).
    let core_says = outcome.reason(lang).unwrap_or_default();
    match outcome.status {
        Status::Done if outcome.offline => vec![pick(
            lang,
            "Approved by the terminal: it is uploaded when the network is back (Send unsent, or at settlement).",
            "终端离线批准：联网后上送（上送未发送交易或结算时）。",
        )
        .into()],
        Status::Done => Vec::new(),
        Status::Declined if outcome.response_code.is_some() => Vec::new(),
        Status::Declined => vec![core_says],
        Status::Refused => vec![core_says],
        Status::NoNetwork => vec![
            pick(lang, "The host cannot be reached: nothing was sent.", "无法连接主机：交易未发送。").into(),
            core_says,
        ],
        Status::NoAnswer if outcome.queued => vec![
            pick(
                lang,
                "No answer in time: the reversal is queued and goes to the host before anything else.",
                "主机未及时应答：已保存冲正，下笔交易前先发送。",
            )
            .into(),
            core_says,
        ],
        Status::NoAnswer => vec![
            pick(
                lang,
                "The outcome is not known yet: check it in the transaction query; never charge again.",
                "结果未知：请在交易查询中核对，切勿重复收款。",
            )
            .into(),
            core_says,
        ],
    }
}

fn receipt(frame: &mut Frame, area: Rect, lang: Lang, view: &ReceiptView) -> &'static str {
    let copy = match view.copy {
        kassa_receipt::Copy::Merchant => pick(lang, "Merchant copy", "商户存根"),
        kassa_receipt::Copy::Customer => pick(lang, "Customer copy", "持卡人存根"),
    };
    let title = format!("{} · {copy}", pick(lang, "Slip", "签购单"));
    let block = framed(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines = kassa_receipt::preview(&view.receipt, view.copy, receipt_lang(lang));
    let width = lines.iter().map(|line| line.chars().count()).max().unwrap_or(32).max(32);
    let paper_width = u16::try_from(width + 2).unwrap_or(u16::MAX);
    let [paper, side] = Layout::horizontal([Constraint::Length(paper_width), Constraint::Min(10)]).areas(inner);
    let text: Vec<Line> = lines.into_iter().map(|line| Line::raw(format!(" {line}"))).collect();
    frame.render_widget(Paragraph::new(text).style(PAPER).scroll((view.scroll, 0)), paper);
    let mut notes = vec![
        Line::raw(""),
        Line::raw(format!(" {}", pick(lang, "↑↓ scroll", "↑↓ 滚动"))),
        Line::raw(format!(" {}", pick(lang, "C other copy", "C 切换存根"))),
        Line::raw(format!(" {}", pick(lang, "P print", "P 打印"))),
        Line::raw(""),
    ];
    if let Some(notice) = &view.notice {
        notes.push(Line::styled(format!(" {}", notice.get(lang)), ERROR));
    }
    frame.render_widget(Paragraph::new(notes).wrap(Wrap { trim: false }), side);
    pick(lang, "↑↓ scroll  C copy  P print  Enter/Esc menu", "↑↓ 滚动  C 存根  P 打印  Enter/Esc 返回")
}

fn query(frame: &mut Frame, area: Rect, lang: Lang, view: &QueryView) -> &'static str {
    let title = format!("{} ({})", pick(lang, "Transaction query: open batch", "交易查询：当前批次"), view.rows.len());
    let block = framed(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [table_area, note_area] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let header = Row::new([
        pick(lang, "STAN", "凭证号"),
        pick(lang, "Kind", "类型"),
        pick(lang, "Amount", "金额"),
        pick(lang, "Card / wallet", "卡号/钱包"),
        pick(lang, "State", "状态"),
        pick(lang, "RRN / trade", "参考号/订单号"),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows_shown = usize::from(table_area.height.saturating_sub(1)).max(1);
    let first = view.selected.saturating_sub(rows_shown - 1);
    let rows = view.rows.iter().enumerate().skip(first).take(rows_shown).map(|(index, item)| {
        let stan = if item.stan == 0 { "-".to_owned() } else { format!("{:06}", item.stan) };
        let means =
            if item.pan_masked.is_empty() { item.wallet.clone() } else { kassa_receipt::mask_pan(&item.pan_masked) };
        let reference = if item.rrn.is_empty() { item.out_trade_no.clone() } else { item.rrn.clone() };
        let style = if index == view.selected { HIGHLIGHT } else { Style::new() };
        Row::new([
            Cell::from(stan),
            Cell::from(kind_name(lang, item.kind)),
            Cell::from(kassa_terminal::format_amount(item.amount_minor)),
            Cell::from(means),
            Cell::from(state_name(lang, item.state)),
            Cell::from(reference),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(7),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(20),
        Constraint::Length(12),
        Constraint::Min(12),
    ];
    frame.render_widget(Table::new(rows, widths).header(header), table_area);
    let note = match (&view.error, view.rows.is_empty()) {
        (Some(error), _) => Line::styled(error.get(lang).to_owned(), ERROR),
        (None, true) => Line::raw(pick(lang, "No transactions in the open batch.", "当前批次无交易。")),
        (None, false) => Line::raw(""),
    };
    frame.render_widget(Paragraph::new(note).alignment(Alignment::Left), note_area);
    pick(lang, "↑↓ choose  Enter slip  Esc menu", "↑↓ 选择  Enter 签购单  Esc 返回")
}

fn read_mode_name(lang: Lang, mode: ReadMode) -> &'static str {
    match mode {
        ReadMode::Swipe => pick(lang, "swiped", "刷卡"),
        ReadMode::Insert => pick(lang, "inserted", "插卡"),
        ReadMode::Tap => pick(lang, "tapped", "挥卡"),
        ReadMode::Keyed => pick(lang, "keyed", "手输"),
    }
}
