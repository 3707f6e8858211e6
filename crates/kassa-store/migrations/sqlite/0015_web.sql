-- The web back office: terminal fleet facts and activation deposits (reserved slot).
SELECT 1;
