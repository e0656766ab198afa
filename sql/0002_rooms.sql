-- Rooms as event DAGs: events, edges, state groups, current state, memberships, streams.

CREATE TABLE rooms (
    room_id         TEXT PRIMARY KEY,
    room_version    TEXT NOT NULL,
    creator         TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    -- published in the public room directory
    is_public       BOOLEAN NOT NULL DEFAULT FALSE
);

-- Every event once, as the canonical JSON of its PDU (kept verbatim so hashes
-- and signatures stay exact), with the columns queries need pulled out.
-- stream_ordering is the position on the room-events stream: allocated under an
-- advisory lock and committed in order, so readers never skip a late commit.
CREATE TABLE events (
    stream_ordering       BIGINT PRIMARY KEY,
    topological_ordering  BIGINT NOT NULL,      -- the event's depth
    event_id              TEXT NOT NULL UNIQUE,
    room_id               TEXT NOT NULL,
    type                  TEXT NOT NULL,
    state_key             TEXT,
    sender                TEXT NOT NULL,
    origin_server_ts      BIGINT NOT NULL,
    json                  TEXT NOT NULL,
    -- prev_content/prev_sender/replaces_state computed once at persist time
    unsigned              JSONB NOT NULL DEFAULT '{}'::jsonb,
    outlier               BOOLEAN NOT NULL DEFAULT FALSE,
    rejection             TEXT,
    redacted_by           TEXT,
    membership            TEXT,                 -- for m.room.member events
    contains_url          BOOLEAN NOT NULL DEFAULT FALSE,
    -- the state group holding the room state *after* this event
    state_group           BIGINT
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topo ON events (room_id, topological_ordering, stream_ordering);
CREATE INDEX events_members ON events (state_key, stream_ordering) WHERE type = 'm.room.member';

CREATE TABLE event_edges (
    event_id        TEXT NOT NULL,
    prev_event_id   TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id        TEXT NOT NULL,
    auth_event_id   TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

CREATE TABLE room_forward_extremities (
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State groups: a snapshot stored as a delta from a parent group. chain_length
-- bounds the walk: past a limit a group is stored in full.
CREATE TABLE state_groups (
    id              BIGSERIAL PRIMARY KEY,
    room_id         TEXT NOT NULL,
    prev_group      BIGINT REFERENCES state_groups(id),
    chain_length    INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    state_group     BIGINT NOT NULL REFERENCES state_groups(id),
    type            TEXT NOT NULL,
    state_key       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
);

CREATE TABLE current_state (
    room_id         TEXT NOT NULL,
    type            TEXT NOT NULL,
    state_key       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- The current membership of every user in every room, for fast member and room lists.
CREATE TABLE room_memberships (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    membership      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    sender          TEXT NOT NULL,
    displayname     TEXT,
    avatar_url      TEXT,
    forgotten       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);

-- Transaction IDs of client sends, per device and endpoint (scope: the room and
-- the kind of request): a retry returns the same event.
CREATE TABLE event_txn_ids (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    scope           TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

CREATE TABLE event_relations (
    event_id        TEXT PRIMARY KEY,
    relates_to_id   TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    aggregation_key TEXT
);
CREATE INDEX event_relations_target ON event_relations (relates_to_id, rel_type);

CREATE TABLE room_aliases (
    room_alias      TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    creator         TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
