-- chatsvg-core schema, version 6 (PostgreSQL): each account keeps the net
-- usage of one daily-cap window, so a charge under a cap reads one row instead
-- of summing the owner's entries of the day (a cost that grew with every
-- charge the owner made that day, under the owner's lock: 47 ms a charge at
-- 10,000 entries that day, 250-290 ms at 100,000, in a 1 M-entry ledger).
--
-- cap_used is the usage (what USAGE sums) of [cap_since, cap_until), kept by
-- the statements that write ledger entries. NULL for every existing account:
-- the first capped charge of an account sums its window once and stores it.
-- Nullable columns without a default: a catalog change, no table rewrite.
ALTER TABLE chatsvg_accounts
    ADD COLUMN cap_since timestamptz,
    ADD COLUMN cap_until timestamptz,
    ADD COLUMN cap_used bigint;
