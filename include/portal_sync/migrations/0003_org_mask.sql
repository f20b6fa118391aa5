-- The customer-number mask the run read from SM_Organization (plausibility check of accounts).
ALTER TABLE sync.runs ADD COLUMN customer_number_mask text;
