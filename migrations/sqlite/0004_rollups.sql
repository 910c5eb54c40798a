-- Per-minute rollups of finished tasks (DESIGN §12), upserted in the same transactions as
-- the results they count (src/store/rollups.rs); the charts read only this table.
-- minute: epoch ms of the minute's start. h0..h9: fetch durations <= 50, 100, 250, 500,
-- 1000, 2500, 5000, 10000, 30000 ms and longer (cancelled tasks are not in them).
CREATE TABLE rollup_minute (
    minute          BIGINT PRIMARY KEY,
    ok              BIGINT NOT NULL DEFAULT 0,
    http_error      BIGINT NOT NULL DEFAULT 0,
    failed          BIGINT NOT NULL DEFAULT 0,
    truncated       BIGINT NOT NULL DEFAULT 0,
    cancelled       BIGINT NOT NULL DEFAULT 0,
    bytes           BIGINT NOT NULL DEFAULT 0,
    duration_ms_sum BIGINT NOT NULL DEFAULT 0,
    h0 BIGINT NOT NULL DEFAULT 0,
    h1 BIGINT NOT NULL DEFAULT 0,
    h2 BIGINT NOT NULL DEFAULT 0,
    h3 BIGINT NOT NULL DEFAULT 0,
    h4 BIGINT NOT NULL DEFAULT 0,
    h5 BIGINT NOT NULL DEFAULT 0,
    h6 BIGINT NOT NULL DEFAULT 0,
    h7 BIGINT NOT NULL DEFAULT 0,
    h8 BIGINT NOT NULL DEFAULT 0,
    h9 BIGINT NOT NULL DEFAULT 0
);
