-- Hootenanny's index in PostgreSQL (cluster mode). Each record is kept as its wire message
-- (hooteproto.v1.Artifact, hooteproto.v1.Binding), exactly as the schema describes it, with
-- the columns that queries filter and order by beside it. Text is compared byte by byte
-- (COLLATE "C"), so ids sort by time and listings match the embedded store's order.

CREATE TABLE artifacts (
    id       TEXT COLLATE "C" PRIMARY KEY,
    cas_hash TEXT COLLATE "C" NOT NULL,
    creator  TEXT COLLATE "C" NOT NULL,
    record   BYTEA NOT NULL
);
CREATE INDEX artifacts_by_hash ON artifacts (cas_hash, id);
CREATE INDEX artifacts_by_creator ON artifacts (creator, id);

CREATE TABLE artifact_tags (
    tag TEXT COLLATE "C" NOT NULL,
    id  TEXT COLLATE "C" NOT NULL REFERENCES artifacts (id),
    PRIMARY KEY (tag, id)
);

-- One row per parent → child edge of the lineage.
CREATE TABLE lineage (
    parent TEXT COLLATE "C" NOT NULL REFERENCES artifacts (id),
    child  TEXT COLLATE "C" NOT NULL REFERENCES artifacts (id),
    PRIMARY KEY (parent, child)
);
CREATE INDEX lineage_by_child ON lineage (child, parent);

CREATE TABLE bindings (
    identity TEXT COLLATE "C" PRIMARY KEY,
    record   BYTEA NOT NULL
);
