//! Terminal re-initialisation (重新初始化): the terminal wipes its local data and starts again
//! (sign-in, parameters). The host allows it only when nothing can be lost by it — neither in
//! the terminal's journal (what it reports as unsent) nor in the host's own records for it
//! (pending card transactions, issuer reversals owed, an open batch not yet settled) — and then
//! ends the terminal's operator sessions and forgets its working keys, so that it must sign in
//! again. Refusals and the re-initialisation itself are audited with who, where and why.

use kassa_store::auth::{self as store_auth, TerminalOpenItems};
use kassa_store::{gateway, TerminalRecord, WriteUnit};
use serde_json::json;

use crate::error::AuthError;
use crate::permissions::Permission;
use crate::service::{committed, Auth, OperatorSession, Origin};

/// The longest reason kept in the audit log.
pub const REASON_CHARS_MAX: usize = 200;

fn open_items_message(unsent_reported: u32, open: &TerminalOpenItems, open_batch: u32) -> String {
    let mut items = Vec::new();
    if unsent_reported > 0 {
        items.push(format!("{unsent_reported} unsent item(s) in the terminal's journal (send them first)"));
    }
    if open.pending_txns > 0 {
        items.push(format!("{} card transaction(s) still pending at the host", open.pending_txns));
    }
    if open.issuer_reversals_owed > 0 {
        items.push(format!("{} reversal(s) the host still owes the issuer", open.issuer_reversals_owed));
    }
    if open.open_batch_txns > 0 {
        items.push(format!(
            "{} transaction(s) in the open batch {open_batch:06} (settle it first)",
            open.open_batch_txns
        ));
    }
    format!("the terminal cannot be re-initialised yet: {}", items.join("; "))
}

impl Auth {
    /// Re-initialises `terminal` for a supervisor signed in at it. `unsent_reported` is what the
    /// terminal's journal still holds; `reason` is required and audited.
    pub async fn reinitialise_terminal(
        &self,
        session: &OperatorSession,
        terminal: &TerminalRecord,
        unsent_reported: u32,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require(Permission::ChangeSettings)?;
        if session.terminal_id != terminal.terminal_id || session.merchant_id != terminal.merchant_id {
            return Err(AuthError::NoSession);
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > REASON_CHARS_MAX {
            return Err(AuthError::Invalid(format!("a reason of 1 to {REASON_CHARS_MAX} characters is required")));
        }
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let target = format!("terminal:{}", terminal.terminal_id);
        let open = self.store.auth().terminal_open_items(&terminal.terminal_id, terminal.open_batch).await?;
        let refuse = async |open: &TerminalOpenItems| -> Result<(), AuthError> {
            let message = open_items_message(unsent_reported, open, terminal.open_batch);
            let details = json!({
                "unsent_reported": unsent_reported,
                "pending_txns": open.pending_txns,
                "issuer_reversals_owed": open.issuer_reversals_owed,
                "open_batch_txns": open.open_batch_txns,
                "open_batch": terminal.open_batch,
            });
            let audit = self.audit(&origin, "terminal_reinit_refused", &target, reason, details);
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            Err(AuthError::Blocked(message))
        };
        if unsent_reported > 0 || !open.is_clear() {
            return refuse(&open).await;
        }
        let now = self.clock.now_ms();
        let ops = vec![
            store_auth::end_terminal_sessions(&terminal.terminal_id, now, "terminal_reinitialised"),
            gateway::delete_working_keys(&terminal.terminal_id),
            self.audit(&origin, "terminal_reinitialised", &target, reason, json!({"open_batch": terminal.open_batch})),
        ];
        let guard = store_auth::reinitialise_terminal_if_clear(&terminal.terminal_id, terminal.open_batch);
        if committed(self.store.commit(WriteUnit::guarded(guard, ops)).await?) {
            return Ok(());
        }
        // Something opened between the read and the write (or the terminal was deactivated).
        let open = self.store.auth().terminal_open_items(&terminal.terminal_id, terminal.open_batch).await?;
        if open.is_clear() {
            return Err(AuthError::Conflict);
        }
        refuse(&open).await
    }
}
