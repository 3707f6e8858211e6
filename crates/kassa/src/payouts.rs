//! `kassa payouts`: settles every merchant for one business day, once (T+1, or D0 for the
//! merchants set so while the day is open), and the host's correction and payout routes
//! (docs/reference/settlement.md).

use std::sync::Arc;

use anyhow::Context;
use kassa_domain::clock::{Clock, SystemClock};
use kassa_domain::CivilDate;
use kassa_payout::{payout_json, Payouts};
use kassa_server::Config;
use kassa_store::payouts::PayoutRecord;

use crate::{gateway, store};

/// What `kassa payouts` was asked.
#[derive(Debug, Clone)]
pub struct PayoutsRequest {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Print the JSON object instead of a sentence per payout.
    pub json: bool,
}

/// The back office's correction (补登) and payout routes of the host, on `office`'s sessions.
pub fn routes(
    config: &Config,
    store: &kassa_store::Store,
    qr_service: Option<kassa_qr::QrService>,
    office: kassa_backoffice::BackOfficeState,
) -> anyhow::Result<axum::Router> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let corrections = kassa_recon::corrections::Corrections::new(store.clone(), qr_service, clock.clone());
    let payouts = Payouts::new(store.clone(), clock, gateway::business_day(config)?);
    Ok(kassa_backoffice::corrections::router(kassa_backoffice::corrections::CorrectionRoutes::new(
        office.clone(),
        corrections,
    ))
    .merge(kassa_backoffice::payouts::router(kassa_backoffice::payouts::PayoutRoutes::new(office, payouts))))
}

/// Runs `kassa payouts`.
#[expect(clippy::print_stdout, reason = "the payouts are what `kassa payouts` is run for")]
pub async fn run(config: &Config, request: &PayoutsRequest) -> anyhow::Result<()> {
    let date = CivilDate::parse(&request.date)
        .with_context(|| format!("--date {:?}: expected a date YYYY-MM-DD", request.date))?;
    let store = store::open(config).await?;
    let payouts = Payouts::new(store.inner().clone(), Arc::new(SystemClock), gateway::business_day(config)?);
    let made = payouts.run(date, "cli").await.with_context(|| format!("payouts of {date}"))?;
    if request.json {
        let lines: Vec<serde_json::Value> = made.iter().map(contract_json).collect();
        println!("{}", serde_json::json!({"date": date.to_string(), "payouts": lines}));
    } else if made.is_empty() {
        println!("no payouts for {date}: nothing is owed to any merchant for it yet");
    } else {
        for payout in &made {
            println!("{}", sentence(payout));
        }
    }
    Ok(())
}

/// One payout as the contract of `kassa payouts --json` names it, plus its corrections.
fn contract_json(payout: &PayoutRecord) -> serde_json::Value {
    let full = payout_json(payout);
    serde_json::json!({
        "merchant": full["merchant"],
        "payout": full["payout"],
        "gross": full["gross"],
        "refunds": full["refunds"],
        "fees": full["fees"],
        "corrections": full["corrections"],
        "net": full["net"],
        "currency": full["currency"],
    })
}

fn sentence(p: &PayoutRecord) -> String {
    let t = &p.totals;
    format!(
        "payout {} of merchant {} for {} ({}): gross {}, refunds {}, fees {}, corrections {}, net {} {} (minor units, {} entries)",
        p.id,
        p.merchant_id,
        p.business_date,
        p.schedule.as_str(),
        t.gross_minor,
        t.refunds_minor,
        t.fees_minor,
        t.corrections_minor,
        t.net_minor,
        p.currency.code(),
        t.item_count
    )
}
