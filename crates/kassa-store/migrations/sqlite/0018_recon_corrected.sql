-- Reconciliation compares a payment at its amount as corrected: the recorded amount plus the
-- approved correction of it (补登 amount_mismatch), read with each page of the day.
--
-- A card sale's correction is read by the sale's id: one approved per host transaction (as one
-- per payment reference, corrections_one_amount_approved), so the read finds at most one and a
-- sale's amount is corrected once however the correction names it.
CREATE UNIQUE INDEX corrections_one_amount_approved_per_txn ON corrections (txn_id)
    WHERE status = 'approved' AND kind = 'amount_mismatch' AND txn_id IS NOT NULL;
-- What an approval posted (an amount's signed difference, a card credit's amount) is read from
-- its column, which an approval now writes (a proposal from reconciliation names it in its
-- details only); the corrections approved before, from there.
UPDATE corrections SET amount_minor = json_extract(details, '$.amount_minor')
    WHERE status = 'approved' AND amount_minor IS NULL
    AND json_valid(details) AND json_type(details, '$.amount_minor') = 'integer';
