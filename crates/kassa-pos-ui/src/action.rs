//! The core calls the screen makes: one [`Action`] per call of [`kassa_terminal::Terminal`],
//! built by the App from what the cashier typed and run by [`execute`]. The UI has no logic of
//! its own behind them: the headless driver calls the same methods.

use kassa_terminal::terminal::{CardEntry, CardRead};
use kassa_terminal::{Outcome, Terminal};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// A secret the cashier typed (password, PIN, payment code): zeroized when dropped, never printed.
pub type Secret = Zeroizing<String>;

/// One call of the terminal core.
#[derive(PartialEq, Eq)]
pub enum Action {
    /// `Terminal::login`: operator sign-in (TMS) and terminal sign-in (ISO 0800).
    Login {
        /// The operator code.
        operator: String,
        /// Its password.
        password: Secret,
    },
    /// `Terminal::change_password`.
    ChangePassword {
        /// The current password.
        old: Secret,
        /// The new one.
        new: Secret,
    },
    /// `Terminal::change_refund_password` (supervisor).
    ChangeRefundPassword {
        /// The current refund password.
        old: Secret,
        /// The new one.
        new: Secret,
    },
    /// `Terminal::change_paycode_password` (supervisor): `old` is `None` when none is set yet.
    ChangePaycodePassword {
        /// The current payment-code password, if one is set.
        old: Option<Secret>,
        /// The new one.
        new: Secret,
    },
    /// `Terminal::sale`.
    Sale {
        /// Minor units.
        amount_minor: u64,
        /// The card number read or keyed.
        pan: Secret,
        /// How the card was read.
        entry: CardEntry,
        /// The online PIN, when entered.
        pin: Option<Secret>,
    },
    /// `Terminal::void`.
    Void {
        /// The sale's STAN in the open batch.
        stan: u32,
        /// The merchant's refund password.
        refund_password: Secret,
    },
    /// `Terminal::refund`.
    Refund {
        /// The sale's RRN.
        rrn: String,
        /// Minor units to refund.
        amount_minor: u64,
        /// The sale's date, `MMDD`.
        date_mmdd: String,
        /// The merchant's refund password.
        refund_password: Secret,
    },
    /// `Terminal::qr_pay`: the customer's payment code.
    QrPay {
        /// Minor units.
        amount_minor: u64,
        /// The 18-digit payment code scanned.
        code: Secret,
        /// The payment-code password, when the merchant requires it.
        paycode_password: Option<Secret>,
    },
    /// `Terminal::qr_show`: the merchant QR.
    QrShow {
        /// Minor units.
        amount_minor: u64,
    },
    /// `Terminal::qr_refund`.
    QrRefund {
        /// The payment's trade reference.
        out_trade_no: String,
        /// Minor units to refund.
        amount_minor: u64,
        /// The payment-code password, when the merchant requires it for refunds.
        paycode_password: Option<Secret>,
    },
    /// `Terminal::balance`.
    Balance {
        /// The card number.
        pan: Secret,
        /// How the card was read.
        entry: CardEntry,
        /// The PIN.
        pin: Secret,
    },
    /// `Terminal::settle`.
    Settle,
    /// `Terminal::reprint_receipt`: the newest slip (`None`) or the one of a STAN.
    Reprint {
        /// A STAN of the open batch (or a QR payment's `out_trade_no`).
        reference: Option<String>,
    },
    /// `Terminal::sign_in`: the terminal's sign-in again (new working keys).
    SignIn,
    /// `Terminal::download_parameters`.
    DownloadParameters,
    /// `Terminal::set_offline`.
    SetOffline(bool),
    /// `Terminal::flush`: send what the journal holds.
    Flush,
    /// `Terminal::logout`.
    Logout,
    /// `Terminal::add_operator` (supervisor).
    AddOperator {
        /// The new operator's code.
        code: String,
        /// Its initial password (changed at first use).
        initial_password: Secret,
    },
    /// `Terminal::set_operator_enabled` (supervisor).
    SetOperatorEnabled {
        /// The operator.
        code: String,
        /// Enable (`true`) or disable.
        enabled: bool,
    },
    /// `Terminal::unlock_operator` (supervisor).
    UnlockOperator {
        /// The operator.
        code: String,
    },
    /// `Terminal::reset_operator` (supervisor).
    ResetOperator {
        /// The operator.
        code: String,
        /// The new initial password.
        new_password: Secret,
        /// Why (audited).
        reason: String,
    },
}

impl Action {
    /// The core method's name, as the headless command would say it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Login { .. } => "login",
            Action::ChangePassword { .. } => "change-password",
            Action::ChangeRefundPassword { .. } => "change-refund-password",
            Action::ChangePaycodePassword { .. } => "change-paycode-password",
            Action::Sale { .. } => "sale",
            Action::Void { .. } => "void",
            Action::Refund { .. } => "refund",
            Action::QrPay { .. } => "qr-pay",
            Action::QrShow { .. } => "qr-show",
            Action::QrRefund { .. } => "qr-refund",
            Action::Balance { .. } => "balance",
            Action::Settle => "settle",
            Action::Reprint { .. } => "reprint",
            Action::SignIn => "sign-in",
            Action::DownloadParameters => "parameters",
            Action::SetOffline(_) => "offline",
            Action::Flush => "flush",
            Action::Logout => "logout",
            Action::AddOperator { .. } => "add-operator",
            Action::SetOperatorEnabled { .. } => "set-operator-enabled",
            Action::UnlockOperator { .. } => "unlock-operator",
            Action::ResetOperator { .. } => "reset-operator",
        }
    }

    /// Whether the cashier may cancel it with Esc while it runs. Only the merchant QR (the core
    /// closes the order at the host); a card request in flight is never abandoned.
    pub fn cancellable(&self) -> bool {
        matches!(self, Action::QrShow { .. })
    }

    /// Whether an approval prints its slips (with a printer), as the headless driver does.
    pub fn prints_slips(&self) -> bool {
        matches!(
            self,
            Action::Sale { .. }
                | Action::Void { .. }
                | Action::Refund { .. }
                | Action::QrPay { .. }
                | Action::QrShow { .. }
                | Action::QrRefund { .. }
                | Action::Settle
        )
    }
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The name only: arguments may be secrets or card numbers.
        f.write_str(self.name())
    }
}

fn optional(secret: Option<&Secret>) -> Option<&str> {
    secret.map(|secret| secret.as_str())
}

/// Runs `action` on the core and, after an approval, prints its slips (with a printer). `on_code`
/// gets the merchant QR's code the moment the host has it; `cancel` closes that QR early.
pub async fn execute(
    core: &mut Terminal,
    action: &Action,
    on_code: &mut (dyn FnMut(&str) + Send),
    cancel: &CancellationToken,
) -> Outcome {
    let mut outcome = call(core, action, on_code, cancel).await;
    if action.prints_slips() {
        core.print_approval(&mut outcome).await;
    }
    outcome
}

async fn call(
    core: &mut Terminal,
    action: &Action,
    on_code: &mut (dyn FnMut(&str) + Send),
    cancel: &CancellationToken,
) -> Outcome {
    match action {
        Action::Login { operator, password } => core.login(operator, password).await,
        Action::ChangePassword { old, new } => core.change_password(old, new).await,
        Action::ChangeRefundPassword { old, new } => core.change_refund_password(old, new).await,
        Action::ChangePaycodePassword { old, new } => core.change_paycode_password(optional(old.as_ref()), new).await,
        Action::Sale { amount_minor, pan, entry, pin } => {
            let read = CardRead { pan: pan.as_str().to_owned(), entry: *entry };
            core.sale_read(*amount_minor, &read, optional(pin.as_ref())).await
        }
        Action::Void { stan, refund_password } => core.void(*stan, refund_password).await,
        Action::Refund { rrn, amount_minor, date_mmdd, refund_password } => {
            core.refund(rrn, *amount_minor, date_mmdd, refund_password).await
        }
        Action::QrPay { amount_minor, code, paycode_password } => {
            core.qr_pay(*amount_minor, code, optional(paycode_password.as_ref())).await
        }
        Action::QrShow { amount_minor } => core.qr_show_cancellable(*amount_minor, on_code, cancel).await,
        Action::QrRefund { out_trade_no, amount_minor, paycode_password } => {
            core.qr_refund(out_trade_no, *amount_minor, optional(paycode_password.as_ref())).await
        }
        Action::Balance { pan, entry, pin } => {
            core.balance_read(&CardRead { pan: pan.as_str().to_owned(), entry: *entry }, pin).await
        }
        Action::Settle => core.settle().await,
        Action::Reprint { reference } => core.reprint_receipt(reference.as_deref()).await,
        Action::SignIn => core.sign_in().await,
        Action::DownloadParameters => core.download_parameters().await,
        Action::SetOffline(offline) => core.set_offline(*offline),
        Action::Flush => core.flush().await,
        Action::Logout => core.logout().await,
        Action::AddOperator { code, initial_password } => core.add_operator(code, initial_password).await,
        Action::SetOperatorEnabled { code, enabled } => core.set_operator_enabled(code, *enabled).await,
        Action::UnlockOperator { code } => core.unlock_operator(code).await,
        Action::ResetOperator { code, new_password, reason } => core.reset_operator(code, new_password, reason).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_the_name_only() {
        let action = Action::Sale {
            amount_minor: 1234,
            pan: Zeroizing::new("6222021234567890128".into()),
            entry: CardEntry::Insert,
            pin: Some(Zeroizing::new("123456".into())),
        };
        assert_eq!(format!("{action:?}"), "sale");
        assert!(!Action::Sale {
            amount_minor: 1,
            pan: Zeroizing::new(String::new()),
            entry: CardEntry::Keyed,
            pin: None
        }
        .cancellable());
        assert!(Action::QrShow { amount_minor: 1 }.cancellable());
    }
}
