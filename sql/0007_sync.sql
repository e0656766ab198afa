-- Per-user data delivered through /sync: filters, account data, receipts, presence.
-- Every stream table carries a stream_id allocated under that stream's
-- transaction advisory lock, so positions become visible in order.

CREATE TABLE user_filters (
    user_id         TEXT NOT NULL,
    filter_id       BIGINT NOT NULL,
    filter_json     TEXT NOT NULL,     -- canonical JSON, so identical filters share an ID
    PRIMARY KEY (user_id, filter_id)
);
CREATE UNIQUE INDEX user_filters_json ON user_filters (user_id, md5(filter_json));

CREATE TABLE account_data (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL DEFAULT '',   -- '' for global account data
    type            TEXT NOT NULL,
    content         JSONB NOT NULL,
    stream_id       BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);

CREATE TABLE receipts (
    room_id         TEXT NOT NULL,
    receipt_type    TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    thread_id       TEXT NOT NULL DEFAULT '',   -- '' for unthreaded receipts
    event_id        TEXT NOT NULL,
    event_stream    BIGINT NOT NULL,            -- stream_ordering of the receipted event
    ts              BIGINT NOT NULL,
    stream_id       BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (stream_id);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);

CREATE TABLE presence (
    user_id           TEXT PRIMARY KEY,
    state             TEXT NOT NULL,
    status_msg        TEXT,
    last_active_ts    BIGINT NOT NULL,
    last_sync_ts      BIGINT NOT NULL DEFAULT 0,
    currently_active  BOOLEAN NOT NULL DEFAULT FALSE,
    stream_id         BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);
