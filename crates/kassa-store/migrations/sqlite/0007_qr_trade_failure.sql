-- Why a QR trade failed: the wallet's decline in a stable form (`balance_not_enough`,
-- `code_invalid`, `other:<wallet code>`, `not_sent`), NULL unless the trade failed.

ALTER TABLE qr_trades ADD COLUMN failure TEXT;
