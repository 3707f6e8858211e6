//! One module per area of the back office; each brings its routes, templates and Fluent file.

use axum::Router;

use crate::WebState;

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod corrections;
pub mod dashboard;
pub mod deposits;
pub mod forgot;
pub mod merchants;
pub mod operators;
pub mod payouts;
pub mod recon;
pub mod refunds;
pub mod settings;
pub mod terminals;
pub mod test_transaction;
pub mod transactions;

/// Every page.
pub fn routes() -> Router<WebState> {
    Router::new()
        .merge(auth::routes())
        .merge(forgot::routes())
        .merge(dashboard::routes())
        .merge(transactions::routes())
        .merge(refunds::routes())
        .merge(recon::routes())
        .merge(corrections::routes())
        .merge(payouts::routes())
        .merge(merchants::routes())
        .merge(terminals::routes())
        .merge(operators::routes())
        .merge(settings::routes())
        .merge(api_keys::routes())
        .merge(test_transaction::routes())
        .merge(deposits::routes())
        .merge(audit::routes())
        .merge(backups::routes())
}
