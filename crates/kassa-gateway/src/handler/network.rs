//! Network management (0800/0820): sign-in hands out working keys and the open batch, sign-out
//! ends the session, the echo test answers; sign-ins and echoes are remembered for the fleet page.

use kassa_iso8583::fields::Field60;
use kassa_iso8583::Message;
use kassa_store::fleet::Contact;
use kassa_store::TerminalRecord;

use super::common::respond;
use super::contacts::contact_kind;
use super::{Handler, Reply};
use crate::business_day::Stamp;
use crate::codes::ResponseCode;

impl Handler {
    pub(super) async fn network(&self, request: &Message, terminal: &TerminalRecord, field60: Field60) -> Reply {
        let now_ms = self.clock.now_ms();
        let stamp = Stamp::of(&self.business_day, now_ms);
        let mut response = respond(request, ResponseCode::APPROVED);
        response.set(12, &stamp.time_hhmmss).set(13, &stamp.date_mmdd);
        let code = &field60.network_management_code;
        if let Some(kind) = contact_kind(request.mti().class().as_str(), code) {
            // 60.3 is all the dialect says: no software version, nothing waiting on the device.
            self.contacts.heard(Contact {
                terminal_id: terminal.terminal_id.clone(),
                at_ms: now_ms,
                kind,
                software_version: None,
                parameters_version: None,
                unsent_offline: None,
                unsent_reversals: None,
            });
        }
        match (request.mti().class().as_str(), code) {
            ("0800", b"003") => match self.sessions.sign_in(terminal, now_ms).await {
                Ok(field_62) => {
                    let open = Field60 { batch_number: terminal.open_batch, ..field60 };
                    response.set_typed(&open).set(62, field_62.as_bytes());
                    tracing::info!(terminal = %terminal.terminal_id, batch = terminal.open_batch, "signed in");
                }
                Err(error) => {
                    tracing::error!(%error, "sign-in failed");
                    response.set(39, ResponseCode::SYSTEM_ERROR.0);
                }
            },
            ("0820", b"002") => {
                if let Err(error) = self.sessions.sign_out(&terminal.terminal_id).await {
                    tracing::error!(%error, "sign-out failed");
                    response.set(39, ResponseCode::SYSTEM_ERROR.0);
                }
            }
            ("0820", b"301") => {}
            _ => {
                response.set(39, ResponseCode::NOT_SUPPORTED.0);
            }
        }
        Reply { message: response, mac: None }
    }
}
