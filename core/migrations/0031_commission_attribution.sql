-- How each ledger row's order was attributed: 'click', 'code' (a discount code active at the order's time),
-- or '' (not credited, or booked before codes existed); `code` is the discount code that credited it.
ALTER TABLE {db}.commissions ADD COLUMN attributed_by String DEFAULT '';
ALTER TABLE {db}.commissions ADD COLUMN code String DEFAULT '';
