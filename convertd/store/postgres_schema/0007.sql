-- 7: the nodes sharing the database (see migrations.py).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('serve', 'worker')),
    address TEXT,
    workers BIGINT NOT NULL,
    version TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    stopped_at DOUBLE PRECISION
);
ALTER TABLE jobs ADD COLUMN node TEXT;
CREATE INDEX jobs_processing_node ON jobs (node) WHERE status = 'processing';
