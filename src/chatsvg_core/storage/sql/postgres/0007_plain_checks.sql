-- chatsvg-core schema, version 7 (PostgreSQL): nothing to do.
-- On SQLite this version rewrites the status and kind CHECK constraints
-- without IN lists (SQLite evaluates those through a temporary b-tree on every
-- write); PostgreSQL evaluates them in place. Kept so both dialects number
-- their versions alike.
SELECT 1;
