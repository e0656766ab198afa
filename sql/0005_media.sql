-- Media repository: local media metadata and thumbnails.
--
-- The bytes live in the media store (filesystem or S3), content-addressed by
-- their SHA-256, so identical uploads share one stored object. Rows here map
-- media IDs to that content. A row with sha256 NULL is an asynchronous upload
-- that was created (POST /media/v1/create) but has no content yet.

CREATE TABLE local_media (
    media_id            TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    created_ts          BIGINT NOT NULL,
    -- NULL until the content is uploaded.
    sha256              TEXT,
    size                BIGINT,
    content_type        TEXT,
    upload_name         TEXT,
    uploaded_ts         BIGINT,
    -- For a created-but-unused ID: when it stops accepting an upload.
    unused_expires_ts   BIGINT,
    -- Uploaded while unauthenticated media was frozen: only the authenticated
    -- endpoints serve it.
    authenticated       BOOLEAN NOT NULL DEFAULT TRUE,
    -- Image facts found at upload (NULL when the content is not an image we decode).
    width               INTEGER,
    height              INTEGER,
    animated            BOOLEAN NOT NULL DEFAULT FALSE,
    -- TRUE when the content looked like an image but could not be thumbnailed.
    thumbnail_failed    BOOLEAN NOT NULL DEFAULT FALSE,
    quarantined_by      TEXT,
    quarantined_ts      BIGINT
);

CREATE INDEX local_media_user_idx ON local_media (user_id, created_ts);
CREATE INDEX local_media_sha256_idx ON local_media (sha256);
CREATE INDEX local_media_pending_idx ON local_media (user_id, unused_expires_ts) WHERE sha256 IS NULL;

-- Thumbnails belong to content, not to a media ID: identical uploads share them.
-- `box_width`/`box_height` is the size that was asked for (the bounding box for
-- "scale", the exact target for "crop"); `width`/`height` is what was made.
CREATE TABLE media_thumbnails (
    source_sha256   TEXT NOT NULL,
    method          TEXT NOT NULL CHECK (method IN ('crop', 'scale')),
    box_width       INTEGER NOT NULL,
    box_height      INTEGER NOT NULL,
    animated        BOOLEAN NOT NULL,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    content_type    TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    size            BIGINT NOT NULL,
    created_ts      BIGINT NOT NULL,
    PRIMARY KEY (source_sha256, method, box_width, box_height, animated)
);
