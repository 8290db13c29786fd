-- chatsvg-core schema, version 4: fixed-window counters for submit rate limits.
-- One row per (limit, identifier) window, written by SQLRateStorage (the
-- `limits` library's storage interface over this database). `expires_at` is
-- in seconds since the epoch, as `limits` counts time.
CREATE TABLE chatsvg_rate_limits (
    limit_key  TEXT             NOT NULL PRIMARY KEY,
    hits       INTEGER          NOT NULL,
    expires_at REAL NOT NULL
);
