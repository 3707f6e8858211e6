//! Balance inquiry (余额查询): asks the issuer, moves no money, journals nothing.

use kassa_domain::{Currency, Money};
use kassa_iso8583::Message;
use kassa_issuer::{AuthoriseRequest, IssuerAnswer, Operation, RequestId};

use super::common::respond;
use super::{Ctx, Handler};
use crate::budget::paused;
use crate::codes::{for_decline, ResponseCode};
use crate::GatewayError;

impl Handler {
    pub(super) async fn balance_inquiry(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let card = match Self::card(request) {
            Ok(card) => card,
            Err(code) => return Ok(respond(request, code)),
        };
        let pin_block = match self.zone_pin_block(ctx, &card.pan) {
            Ok(block) => block,
            Err(code) => return Ok(respond(request, code)),
        };
        // Moves no money, so it is not journaled: a fresh request id per inquiry.
        let id = format!(
            "bal:{}:{}:{}",
            ctx.terminal.terminal_id,
            ctx.field60.batch_number,
            request.field_str(11).unwrap_or("")
        );
        let Some(request_id) = RequestId::new(id) else { return Ok(respond(request, ResponseCode::FORMAT_ERROR)) };
        let issuer_request = AuthoriseRequest {
            request_id,
            operation: Operation::BalanceInquiry,
            pan: card.pan,
            expiry: card.expiry,
            amount: Money::zero(Currency::CNY),
            pin_block,
            chip: request.has(55),
        };
        let answer = paused(tokio::time::timeout(self.issuer_timeout, self.issuer.authorise(&issuer_request))).await;
        let mut response = match answer {
            Ok(Ok(IssuerAnswer::Approved { balance, .. })) => {
                let mut response = respond(request, ResponseCode::APPROVED);
                if let Some(balance) = balance {
                    let field = kassa_iso8583::fields::Balance {
                        account_type: *b"10",
                        amount_type: *b"02",
                        currency: *b"156",
                        sign: if balance.minor() >= 0 {
                            kassa_iso8583::fields::BalanceSign::Credit
                        } else {
                            kassa_iso8583::fields::BalanceSign::Debit
                        },
                        amount_minor: balance.minor().unsigned_abs(),
                    };
                    response.set_typed(&field);
                }
                response.set(63, "CUP");
                response
            }
            Ok(Ok(IssuerAnswer::Declined(decline))) => respond(request, for_decline(decline)),
            Ok(Err(_)) => respond(request, ResponseCode::ISSUER_UNAVAILABLE),
            Err(_) => respond(request, ResponseCode::ISSUER_TIMEOUT),
        };
        response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd);
        Ok(response)
    }
}
