-- Corrections of amounts and card transactions (reserved slot; filled by the recon work).
SELECT 1;
