-- chatsvg-core schema, version 6 (SQLite): each account keeps the net usage of
-- one daily-cap window, so a charge under a cap reads one row instead of
-- summing the owner's entries of the day (a cost that grew with every charge
-- the owner made that day, under the owner's lock).
--
-- cap_used is the usage (what USAGE sums) of [cap_since, cap_until), kept by
-- the statements that write ledger entries. NULL for every existing account:
-- the first capped charge of an account sums its window once and stores it.
ALTER TABLE chatsvg_accounts ADD COLUMN cap_since INTEGER;
ALTER TABLE chatsvg_accounts ADD COLUMN cap_until INTEGER;
ALTER TABLE chatsvg_accounts ADD COLUMN cap_used INTEGER;
