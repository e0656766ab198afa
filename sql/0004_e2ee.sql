-- End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys
-- and signatures, the to-device inbox, device-list changes, server-side key backup.
-- The server only stores and relays these; it never sees plaintext.

-- Stream counters for streams whose rows get deleted (the to-device inbox is
-- emptied as clients acknowledge it), so MAX(stream_id) cannot be the position.
-- Allocation happens under pg_advisory_xact_lock for the stream: positions
-- commit in order.
CREATE TABLE stream_positions (
    stream          TEXT PRIMARY KEY,
    position        BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, position) VALUES ('to_device', 0), ('device_lists', 0);

-- The signed device_keys object of each device, verbatim (canonical JSON text).
CREATE TABLE e2e_device_keys (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    key_json        TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE e2e_one_time_keys (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    key_json        TEXT NOT NULL,      -- the key object (or string) as uploaded
    ts              BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- At most one fallback key per device and algorithm; `used` once it has been claimed.
CREATE TABLE e2e_fallback_keys (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    key_json        TEXT NOT NULL,
    used            BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- key_type: 'master' | 'self_signing' | 'user_signing'. public_key is the unpadded
-- base64 ed25519 key (the key ID without its 'ed25519:' prefix).
CREATE TABLE e2e_cross_signing_keys (
    user_id         TEXT NOT NULL,
    key_type        TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    key_json        TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded with /keys/signatures/upload, kept apart from the signed
-- objects and merged into them on /keys/query. target_key_id is a device ID or a
-- master key's public key.
CREATE TABLE e2e_cross_signing_signatures (
    signer_user_id  TEXT NOT NULL,
    signer_key_id   TEXT NOT NULL,      -- 'ed25519:<device id or public key>'
    target_user_id  TEXT NOT NULL,
    target_key_id   TEXT NOT NULL,
    signature       TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The to-device inbox: one row per recipient device. Rows are deleted once the
-- device syncs with a token past them.
CREATE TABLE device_inbox (
    stream_id       BIGINT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    sender          TEXT NOT NULL,
    type            TEXT NOT NULL,
    content         TEXT NOT NULL
);
CREATE INDEX device_inbox_device ON device_inbox (user_id, device_id, stream_id);

-- sendToDevice transaction IDs, per sending device: a retry sends nothing twice.
CREATE TABLE to_device_txns (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- The device_lists stream: a user's devices or cross-signing keys changed at stream_id.
CREATE TABLE device_list_changes (
    stream_id       BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

-- Server-side key backup. Versions are numbered per user; a deleted version keeps
-- its row (deleted = TRUE) so deleting it again succeeds, as the spec asks.
CREATE TABLE e2e_room_keys_versions (
    user_id         TEXT NOT NULL,
    version         BIGINT NOT NULL,
    algorithm       TEXT NOT NULL,
    auth_data       TEXT NOT NULL,
    etag            BIGINT NOT NULL DEFAULT 0,
    deleted         BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
