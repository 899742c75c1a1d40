-- 3: the /v2 API: jobs made of tasks, and scopes on keys.
ALTER TABLE jobs ADD COLUMN timeout_seconds DOUBLE PRECISION;
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT
    '["user.read","user.write","task.read","task.write","webhook.read","webhook.write"]';
CREATE TABLE task_jobs (
    id TEXT PRIMARY KEY,
    key_id BIGINT REFERENCES api_keys(id),
    tag TEXT,
    webhook_url TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX task_jobs_key ON task_jobs (key_id, created_at);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    job_id TEXT REFERENCES task_jobs(id) ON DELETE CASCADE,
    key_id BIGINT REFERENCES api_keys(id),
    name TEXT NOT NULL,
    operation TEXT NOT NULL,
    payload TEXT NOT NULL,
    depends_on TEXT NOT NULL DEFAULT '[]',
    ignore_error BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'processing', 'finished', 'error')),
    code TEXT,
    message TEXT,
    conversion_id TEXT REFERENCES jobs(id),
    result TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    retry_of TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    ended_at DOUBLE PRECISION
);
CREATE INDEX tasks_job ON tasks (job_id, status);
CREATE INDEX tasks_retry ON tasks (retry_of);
CREATE INDEX tasks_key ON tasks (key_id, created_at);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_conversion ON tasks (conversion_id);
-- The order a job's tasks were made in, as SQLite's rowid gives it (Dialect.insertion_order).
ALTER TABLE tasks ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
