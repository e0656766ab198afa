-- Push: per-user push rules, pushers, and notification counters kept up to date
-- when events are persisted (so /sync reads a few integers instead of counting).

-- A user's rule set as one JSON document (see homeserver.core.push_rules): their own
-- rules per kind in priority order, and their changes to server-default rules.
CREATE TABLE push_rules (
    user_id         TEXT PRIMARY KEY,
    ruleset         JSONB NOT NULL
);

-- One row per (recipient, event) that a push rule said to notify about; serves
-- GET /notifications and the recount after a read receipt.
CREATE TABLE event_push_actions (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    thread_id       TEXT NOT NULL DEFAULT 'main',
    notif           BOOLEAN NOT NULL,
    highlight       BOOLEAN NOT NULL,
    actions         JSONB NOT NULL,
    ts              BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_user_stream ON event_push_actions (user_id, stream_ordering);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, thread_id, stream_ordering);

-- Unread counters per user, room and thread ('main' for the main timeline).
CREATE TABLE event_push_summary (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    thread_id       TEXT NOT NULL DEFAULT 'main',
    notif_count     BIGINT NOT NULL DEFAULT 0,
    highlight_count BIGINT NOT NULL DEFAULT 0,
    last_stream     BIGINT NOT NULL DEFAULT 0,   -- newest event counted
    PRIMARY KEY (user_id, room_id, thread_id)
);

CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                JSONB NOT NULL,
    device_id           TEXT,
    pushkey_ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_key ON pushers (app_id, pushkey);
