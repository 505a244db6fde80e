-- The script index several front Luanettes share (cluster mode). Each front keeps a replica in
-- its sled index and applies `script_changes` in order (it hears of new ones on
-- NOTIFY hoot_script_changed); script sources stay in the CAS, named by their hash.
CREATE TABLE shared_scripts (
    hash    TEXT PRIMARY KEY,  -- 64 hex: the source's CAS hash
    record  BYTEA NOT NULL     -- hooteproto.v1.ScriptInfo, tags merged across stores
);

CREATE TABLE script_versions (
    name     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    hash     TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

-- One row per store that changed something, in commit order (writers take one advisory lock,
-- so a sequence number is never visible before a smaller one).
CREATE TABLE script_changes (
    seq      BIGSERIAL PRIMARY KEY,
    hash     TEXT NOT NULL,
    record   BYTEA NOT NULL,
    name     TEXT,             -- set when the store named a version
    version  INTEGER
);
