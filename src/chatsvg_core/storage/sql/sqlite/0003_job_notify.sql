-- chatsvg-core schema, version 3 (SQLite): nothing to do.
-- On PostgreSQL this version adds the trigger that wakes Engine.wait() by
-- LISTEN/NOTIFY; SQLite has no notifications, so waiters re-read with a
-- backoff instead. Kept so both dialects number their versions alike.
SELECT 1;
