//! Unknown states resolved before they are judged: a refund Kassa still has as pending (the
//! wallet's answer was lost, or has not come yet) is asked about at its wallet through the QR
//! service — as its resolver would — and read again, so matching judges what the channel says,
//! not a state Kassa did not know. Trades are resolved the same way by [`crate::run`].

use kassa_qr::QrService;
use kassa_store::qr::QrRefundStatus;
use kassa_store::recon::ReconRefundRecord;
use kassa_store::Store;

use crate::run::{ReconError, RESOLVE_CALLS_MAX};

/// `refund` as it stands once its wallet was asked, when Kassa did not know (pending) and the
/// run has calls left (`calls`, counted with the trades'); as it was otherwise. A wallet that
/// does not answer leaves it pending (judged so, with the reason), and the run goes on.
pub(crate) async fn refund(
    qr: Option<&QrService>,
    store: &Store,
    refund: ReconRefundRecord,
    calls: &mut usize,
) -> Result<Option<ReconRefundRecord>, ReconError> {
    let Some(qr) = qr else { return Ok(Some(refund)) };
    if refund.status != QrRefundStatus::Pending || *calls >= RESOLVE_CALLS_MAX {
        return Ok(Some(refund));
    }
    *calls += 1;
    if let Err(error) = qr.refresh_refund(refund.id).await {
        tracing::warn!(refund = %refund.refund_reference, %error, "reconciliation: the channel could not be asked");
        return Ok(Some(refund));
    }
    Ok(store.recon().refund_by_reference(&refund.refund_reference).await?.or(Some(refund)))
}
