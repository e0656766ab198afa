-- Search: the message full-text index and what the user directory needs.
--
-- event_search holds one row per searchable event (m.room.message bodies,
-- m.room.name, m.room.topic), written in the same transaction as the event by
-- EventStore.persist_event and deleted when the event is redacted. The text
-- configuration is 'english' (stemming and stop words, as Synapse does); the
-- query side must use the same configuration (see storage/search.py).
CREATE TABLE event_search (
    stream_ordering   BIGINT PRIMARY KEY,
    event_id          TEXT NOT NULL UNIQUE,
    room_id           TEXT NOT NULL,
    sender            TEXT NOT NULL,
    type              TEXT NOT NULL,
    -- which key matched: content.body, content.name or content.topic
    key               TEXT NOT NULL,
    origin_server_ts  BIGINT NOT NULL,
    contains_url      BOOLEAN NOT NULL DEFAULT FALSE,
    vector            TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING gin (vector);
CREATE INDEX event_search_room_stream ON event_search (room_id, stream_ordering);

-- Backfill what was sent before this migration (redacted events excluded).
INSERT INTO event_search (stream_ordering, event_id, room_id, sender, type, key, origin_server_ts, contains_url, vector)
SELECT e.stream_ordering, e.event_id, e.room_id, e.sender, e.type, s.key, e.origin_server_ts, e.contains_url,
       to_tsvector('english', s.value)
FROM events e
CROSS JOIN LATERAL (
    SELECT CASE e.type WHEN 'm.room.message' THEN 'content.body'
                       WHEN 'm.room.name' THEN 'content.name'
                       ELSE 'content.topic' END AS key,
           CASE e.type WHEN 'm.room.message' THEN (e.json::jsonb) #>> '{content,body}'
                       WHEN 'm.room.name' THEN (e.json::jsonb) #>> '{content,name}'
                       ELSE (e.json::jsonb) #>> '{content,topic}' END AS value
) s
WHERE e.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
  AND NOT e.outlier AND e.redacted_by IS NULL AND s.value IS NOT NULL
  AND jsonb_typeof((e.json::jsonb) -> 'content' -> split_part(s.key, '.', 2)) = 'string';

-- The join rule and history visibility of every room, kept by persist_event,
-- so the user directory can find "users in public rooms" without parsing state.
CREATE TABLE room_search_settings (
    room_id             TEXT PRIMARY KEY,
    join_rule           TEXT,
    history_visibility  TEXT
);
CREATE INDEX room_search_settings_visible ON room_search_settings (room_id)
    WHERE join_rule = 'public' OR history_visibility = 'world_readable';

INSERT INTO room_search_settings (room_id, join_rule, history_visibility)
SELECT r.room_id,
       (SELECT (e.json::jsonb) #>> '{content,join_rule}' FROM current_state c JOIN events e USING (event_id)
         WHERE c.room_id = r.room_id AND c.type = 'm.room.join_rules' AND c.state_key = ''),
       (SELECT (e.json::jsonb) #>> '{content,history_visibility}' FROM current_state c JOIN events e USING (event_id)
         WHERE c.room_id = r.room_id AND c.type = 'm.room.history_visibility' AND c.state_key = '')
FROM rooms r;

-- User directory: a query-time join of users, profiles and room_memberships.
-- Exact and prefix matches use these btree indexes; substring matches use
-- trigram indexes where pg_trgm is available (stock PostgreSQL has it; the
-- embedded pgserver build does not) and a scan otherwise.
CREATE INDEX profiles_displayname_lower ON profiles (lower(displayname) text_pattern_ops);
CREATE INDEX users_localpart_lower ON users (lower(localpart) text_pattern_ops);
CREATE INDEX users_user_id_lower ON users (lower(user_id) text_pattern_ops);
CREATE INDEX room_memberships_joined_user ON room_memberships (user_id, room_id) WHERE membership = 'join';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
            EXECUTE 'CREATE INDEX profiles_displayname_trgm ON profiles USING gin (lower(displayname) gin_trgm_ops)';
            EXECUTE 'CREATE INDEX users_localpart_trgm ON users USING gin (lower(localpart) gin_trgm_ops)';
        EXCEPTION WHEN insufficient_privilege OR feature_not_supported OR undefined_file THEN
            RAISE NOTICE 'pg_trgm unavailable: directory substring search scans';
        END;
    END IF;
END
$$;

-- History visibility (VisibilityFilter) reads a user's member events and the room's
-- history_visibility events; without this the second half walks every event of the room,
-- which made filtering search hits in big rooms cost O(room size).
CREATE INDEX events_history_visibility ON events (room_id, stream_ordering)
    WHERE type = 'm.room.history_visibility';
