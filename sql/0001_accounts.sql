-- Accounts, devices, tokens, profiles and user-interactive auth sessions.

CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    localpart       TEXT NOT NULL UNIQUE,
    password_hash   TEXT,
    is_admin        BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest        BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated     BOOLEAN NOT NULL DEFAULT FALSE,
    locked          BOOLEAN NOT NULL DEFAULT FALSE,
    suspended       BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts      BIGINT NOT NULL
);

CREATE TABLE profiles (
    user_id         TEXT PRIMARY KEY REFERENCES users(user_id),
    displayname     TEXT,
    avatar_url      TEXT,
    fields          JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE devices (
    user_id         TEXT NOT NULL REFERENCES users(user_id),
    device_id       TEXT NOT NULL,
    display_name    TEXT,
    last_seen_ts    BIGINT,
    last_seen_ip    TEXT,
    created_ts      BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored only as SHA-256 hashes of the token string.
CREATE TABLE access_tokens (
    token_hash      BYTEA PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(user_id),
    device_id       TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    expires_ts      BIGINT,              -- NULL: never expires
    refresh_token_id BIGINT,             -- the refresh token issued alongside, if any
    used            BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
    id              BIGSERIAL PRIMARY KEY,
    token_hash      BYTEA NOT NULL UNIQUE,
    user_id         TEXT NOT NULL REFERENCES users(user_id),
    device_id       TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    expires_ts      BIGINT,
    -- After a refresh, the token that replaced this one. This one stays usable
    -- until its successor (or the successor's access token) is first used.
    next_token_id   BIGINT REFERENCES refresh_tokens(id) ON DELETE SET NULL,
    used            BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

CREATE TABLE uia_sessions (
    session_id      TEXT PRIMARY KEY,
    created_ts      BIGINT NOT NULL,
    -- what the session was started for (method + path), so it cannot be replayed elsewhere
    purpose         TEXT NOT NULL,
    user_id         TEXT,
    completed       JSONB NOT NULL DEFAULT '[]'::jsonb,
    params          JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- result data kept between stages (e.g. the registration token that was accepted)
    data            JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE registration_tokens (
    token           TEXT PRIMARY KEY,
    uses_allowed    INTEGER,            -- NULL: unlimited
    completed       INTEGER NOT NULL DEFAULT 0,
    expiry_ts       BIGINT,
    created_ts      BIGINT NOT NULL
);
