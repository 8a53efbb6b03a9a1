-- The discount codes an order webhook carried (`data.discount_codes`, as sent; matched case-insensitively
-- by the attributor against the merchant's versioned code spans, attribution/codes.py).
ALTER TABLE {db}.order_events ADD COLUMN discount_codes Array(String) DEFAULT emptyArrayString();
