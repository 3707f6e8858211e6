-- Corrections of amounts (amount_mismatch): the channel took another amount than Kassa recorded
-- for a payment Kassa did credit. Such a correction moves the merchant by the difference, so it
-- may be approved next to the correction that credited the payment (issuer_approved_host_failed,
-- paid_not_credited), but a payment's amount is corrected by one approved correction at most.
--
-- An approval writes the correction's channel and reference (a proposal from reconciliation or
-- batch upload names them in its details only), so these indexes hold whoever proposed it.
DROP INDEX corrections_one_approved;
CREATE UNIQUE INDEX corrections_one_approved ON corrections (merchant_id, channel, reference)
    WHERE status = 'approved' AND channel IS NOT NULL AND reference IS NOT NULL AND kind <> 'amount_mismatch';
CREATE UNIQUE INDEX corrections_one_amount_approved ON corrections (merchant_id, channel, reference)
    WHERE status = 'approved' AND channel IS NOT NULL AND reference IS NOT NULL AND kind = 'amount_mismatch';
-- A host transaction is credited by one approved correction at most; reads join this index to
-- show a corrected card sale as approved without editing its record.
DROP INDEX corrections_one_approved_per_txn;
CREATE UNIQUE INDEX corrections_one_approved_per_txn ON corrections (txn_id)
    WHERE status = 'approved' AND txn_id IS NOT NULL AND kind <> 'amount_mismatch';
