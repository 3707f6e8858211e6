-- Postings are read by account for one kind of account only: a merchant's payable, which
-- payouts claim entry by entry (kassa_store::payouts). The index by account held every
-- posting, so each card sale added three entries to it, two of them in the hot fee-income and
-- channel-receivable ranges that no query reads by account (issue #16: the store's writes per
-- sale). It now holds the payable postings only, in the order payouts read them; the queries
-- that use it name its condition.
DROP INDEX ledger_postings_by_account;
CREATE INDEX ledger_postings_payable ON ledger_postings (account_key, entry_id)
    WHERE account_key LIKE 'merchant_payable:%';
