"""The schema, as numbered migrations, and the one function that applies them.

Each migration moves the schema from version N to N+1 in its own transaction, recorded in
`PRAGMA user_version`; a database newer than this code is refused rather than misread.
"""

from __future__ import annotations

import logging
import sqlite3

logger = logging.getLogger(__name__)

# Each entry moves the schema from version N to N+1. Never edit a shipped entry: append one.
# A new migration is appended to BOTH lists: here and POSTGRES_MIGRATIONS in schema_postgres.py,
# at the same index, in each engine's dialect; tests/test_schema_engines.py checks they agree.
MIGRATIONS: list[str] = [
    # 1: plans, keys, quota counters, uploads, jobs.
    """
    CREATE TABLE plans (
        name TEXT PRIMARY KEY,
        api_access INTEGER NOT NULL,
        calls_per_day INTEGER,          -- NULL: unlimited
        calls_per_minute INTEGER        -- NULL: unlimited
    );
    INSERT INTO plans (name, api_access, calls_per_day, calls_per_minute) VALUES
        ('free', 0, NULL, NULL),
        ('basic', 1, 2000, 60),
        ('pro', 1, NULL, NULL);

    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,    -- the key's public start, used to find it
        key_hash TEXT NOT NULL,         -- sha256 of the whole key; the key itself is never stored
        plan TEXT NOT NULL REFERENCES plans(name) ON UPDATE CASCADE,
        restriction_type TEXT NOT NULL DEFAULT 'all'
            CHECK (restriction_type IN ('all', 'ip', 'domain')),
        allowed_ips TEXT NOT NULL DEFAULT '[]',
        allowed_domains TEXT NOT NULL DEFAULT '[]',
        usage_count INTEGER NOT NULL DEFAULT 0,
        last_used_at REAL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );

    CREATE TABLE call_counts (
        key_id INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
        span TEXT NOT NULL CHECK (span IN ('minute', 'day')),
        span_start INTEGER NOT NULL,    -- unix seconds at the start of the UTC window
        count INTEGER NOT NULL,
        PRIMARY KEY (key_id, span, span_start)
    ) WITHOUT ROWID;

    CREATE TABLE uploads (
        id INTEGER PRIMARY KEY,
        key_id INTEGER REFERENCES api_keys(id),
        file_path TEXT NOT NULL UNIQUE,  -- "<token>/<stored name>", relative to the uploads dir
        file_name TEXT NOT NULL,         -- the name the client sent
        file_size INTEGER NOT NULL,
        extension TEXT NOT NULL,
        created_at REAL NOT NULL,
        expired INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        key_id INTEGER REFERENCES api_keys(id),
        upload_id INTEGER NOT NULL REFERENCES uploads(id),
        filetype TEXT NOT NULL,
        input_format TEXT NOT NULL,
        output_format TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'processing', 'finished', 'failed')),
        progress INTEGER,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        owner TEXT,                      -- the worker that holds a 'processing' job
        result_name TEXT,
        result_count INTEGER,
        result_size INTEGER,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        expired INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_pending ON jobs (status, created_at);
    CREATE INDEX uploads_created ON uploads (expired, created_at);
    """,
    # 2: drop folders. A drop is a file taken from a watched folder; its job is an ordinary job.
    """
    ALTER TABLE jobs ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
    CREATE TABLE drops (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        source_path BLOB NOT NULL,      -- where it was dropped; bytes, names need not be UTF-8
        display_name TEXT NOT NULL,     -- the name for humans and for the output
        output_format TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        upload_path TEXT NOT NULL,      -- where the claim moves it, inside the upload area
        upload_id INTEGER REFERENCES uploads(id),
        job_id TEXT REFERENCES jobs(id),
        status TEXT NOT NULL
            CHECK (status IN ('claiming', 'queued', 'delivering', 'done', 'failed')),
        output_path BLOB,               -- chosen before it is written, so a crash cannot double it
        error TEXT,
        created_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX drops_status ON drops (status);
    """,
    # 3: the /v2 API (CloudConvert's model): jobs made of tasks, and scopes on keys. A convert
    # task runs as an ordinary queued job (tasks.conversion_id), so the workers, limits and
    # crash recovery are the ones v1 has.
    """
    ALTER TABLE jobs ADD COLUMN timeout_seconds REAL;  -- tighter than job_timeout_seconds
    ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT
        '["user.read","user.write","task.read","task.write","webhook.read","webhook.write"]';
    CREATE TABLE task_jobs (
        id TEXT PRIMARY KEY,
        key_id INTEGER REFERENCES api_keys(id),
        tag TEXT,
        webhook_url TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX task_jobs_key ON task_jobs (key_id, created_at);
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        job_id TEXT REFERENCES task_jobs(id) ON DELETE CASCADE,  -- NULL: created on its own
        key_id INTEGER REFERENCES api_keys(id),
        name TEXT NOT NULL,
        operation TEXT NOT NULL,
        payload TEXT NOT NULL,           -- the task's parameters, validated, as JSON
        depends_on TEXT NOT NULL DEFAULT '[]',  -- ids of the tasks named in its input
        ignore_error INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'waiting'
            CHECK (status IN ('waiting', 'processing', 'finished', 'error')),
        code TEXT,
        message TEXT,
        conversion_id TEXT REFERENCES jobs(id),  -- the queued job of a running convert task
        result TEXT,                     -- JSON: {"files": [{"filename", "size"}]}
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_of TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL
    );
    CREATE INDEX tasks_job ON tasks (job_id, status);  -- a job's status is read off these
    CREATE INDEX tasks_retry ON tasks (retry_of);
    CREATE INDEX tasks_key ON tasks (key_id, created_at);
    CREATE INDEX tasks_status ON tasks (status);
    CREATE INDEX tasks_conversion ON tasks (conversion_id);
    """,
    # 4: events and webhooks. Every end of a job or task (and a /v2 job's creation) is recorded
    # as an event by the triggers below, in the transaction that changed its status, whatever
    # code path changed it (a deletion is no end: what had not ended is cancelled first, which
    # is); the event fans out at once into one delivery per subscriber. The
    # sender (convertd/events/sender.py) works through the deliveries. A /v2 job's status is
    # defined here once, as the view task_job_status, for these triggers and store/task_jobs.
    """
    ALTER TABLE api_keys ADD COLUMN webhook_secret TEXT;
    UPDATE api_keys SET webhook_secret = 'whsec_' || lower(hex(randomblob(24)));
    ALTER TABLE jobs ADD COLUMN webhook_url TEXT;  -- v1's `callback` / `webhook_url`
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        key_id INTEGER REFERENCES api_keys(id),
        url TEXT NOT NULL,
        events TEXT NOT NULL,           -- JSON list of event names
        signing_secret TEXT,            -- NULL: signed with the key's webhook_secret
        rule TEXT UNIQUE,               -- a watch rule's webhook_url (mirrored from the config)
        created_at REAL NOT NULL
    );
    CREATE INDEX webhooks_key ON webhooks (key_id);
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,             -- job.created, job.finished, job.failed, task.*
        api TEXT NOT NULL CHECK (api IN ('v1', 'v2', 'drop')),
        key_id INTEGER,
        job_id TEXT,                    -- v1: jobs.id; v2: task_jobs.id; drop: its job, if any
        task_id TEXT,
        drop_id INTEGER,
        subject TEXT NOT NULL,          -- what it is about: one event of a kind per subject
        created_at REAL NOT NULL,
        UNIQUE (name, subject)
    );
    CREATE INDEX events_created ON events (created_at);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        webhook_id TEXT,                -- NULL: a job's own webhook_url
        key_id INTEGER,                 -- whose webhook_secret signs it, when not the webhook's
        url TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL,                   -- when it is next tried (pending only)
        body BLOB,                      -- rendered at the first try, the same on every retry
        last_answer TEXT,               -- "200 OK", "timed out after 10 s", ...
        last_at REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
    CREATE INDEX deliveries_event ON deliveries (event_id);
    CREATE INDEX deliveries_webhook ON deliveries (webhook_id, status);

    -- A /v2 job's status, read off its tasks, never stored: in error as soon as one of its
    -- tasks failed (unless that task may fail, or was retried), finished when every task is,
    -- waiting while none has started, processing in between.
    CREATE VIEW task_job_status (job_id, status) AS
    SELECT j.id, CASE
        WHEN EXISTS (SELECT 1 FROM tasks e WHERE e.job_id = j.id AND e.status = 'error'
                     AND e.ignore_error = 0
                     AND NOT EXISTS (SELECT 1 FROM tasks r WHERE r.retry_of = e.id)) THEN 'error'
        WHEN NOT EXISTS (SELECT 1 FROM tasks o WHERE o.job_id = j.id
                         AND o.status IN ('waiting', 'processing')) THEN 'finished'
        WHEN EXISTS (SELECT 1 FROM tasks s WHERE s.job_id = j.id AND s.status != 'waiting')
            THEN 'processing'
        ELSE 'waiting' END
    FROM task_jobs j;

    CREATE TRIGGER v1_job_ended AFTER UPDATE OF status ON jobs
    WHEN NEW.source = 'api' AND NEW.status IN ('finished', 'failed') AND OLD.status != NEW.status
         AND NEW.webhook_url IS NOT NULL  -- only its own URL hears of a v1 job
    BEGIN
        INSERT OR IGNORE INTO events (id, name, api, key_id, job_id, subject, created_at)
        VALUES (lower(hex(randomblob(16))), 'job.' || NEW.status, 'v1', NEW.key_id, NEW.id,
                NEW.id, COALESCE(NEW.finished_at, (julianday('now') - 2440587.5) * 86400));
    END;

    CREATE TRIGGER v2_job_created AFTER INSERT ON task_jobs
    BEGIN
        INSERT OR IGNORE INTO events (id, name, api, key_id, job_id, subject, created_at)
        VALUES (lower(hex(randomblob(16))), 'job.created', 'v2', NEW.key_id, NEW.id, NEW.id,
                NEW.created_at);
    END;

    CREATE TRIGGER v2_task_ended AFTER UPDATE OF status ON tasks
    WHEN NEW.status IN ('finished', 'error') AND OLD.status != NEW.status
    BEGIN
        INSERT OR IGNORE INTO events (id, name, api, key_id, job_id, task_id, subject, created_at)
        VALUES (lower(hex(randomblob(16))),
                CASE NEW.status WHEN 'finished' THEN 'task.finished' ELSE 'task.failed' END,
                'v2', NEW.key_id, NEW.job_id, NEW.id, NEW.id,
                COALESCE(NEW.ended_at, (julianday('now') - 2440587.5) * 86400));
        -- The subject counts the job's tasks: a retry adds one, so a job that fails, is
        -- retried and fails again is told of twice.
        INSERT OR IGNORE INTO events (id, name, api, key_id, job_id, subject, created_at)
        SELECT lower(hex(randomblob(16))),
               CASE s.status WHEN 'finished' THEN 'job.finished' ELSE 'job.failed' END,
               'v2', j.key_id, j.id,
               j.id || '#' || (SELECT COUNT(*) FROM tasks c WHERE c.job_id = j.id),
               COALESCE(NEW.ended_at, (julianday('now') - 2440587.5) * 86400)
        FROM task_jobs j JOIN task_job_status s ON s.job_id = j.id
        WHERE j.id = NEW.job_id AND s.status IN ('finished', 'error');
    END;

    CREATE TRIGGER drop_ended AFTER UPDATE OF status ON drops
    WHEN NEW.status IN ('done', 'failed') AND OLD.status != NEW.status
         AND EXISTS (SELECT 1 FROM webhooks w WHERE w.rule = NEW.rule)
    BEGIN
        INSERT OR IGNORE INTO events (id, name, api, job_id, drop_id, subject, created_at)
        VALUES (lower(hex(randomblob(16))),
                CASE NEW.status WHEN 'done' THEN 'job.finished' ELSE 'job.failed' END,
                'drop', NEW.job_id, NEW.id, 'drop-' || NEW.id,
                COALESCE(NEW.finished_at, (julianday('now') - 2440587.5) * 86400));
    END;

    CREATE TRIGGER drop_refused AFTER INSERT ON drops WHEN NEW.status = 'failed'
        AND EXISTS (SELECT 1 FROM webhooks w WHERE w.rule = NEW.rule)
    BEGIN
        INSERT OR IGNORE INTO events (id, name, api, drop_id, subject, created_at)
        VALUES (lower(hex(randomblob(16))), 'job.failed', 'drop', NEW.id, 'drop-' || NEW.id,
                COALESCE(NEW.finished_at, (julianday('now') - 2440587.5) * 86400));
    END;

    CREATE TRIGGER events_fan_out AFTER INSERT ON events
    BEGIN
        -- Subscriptions made with POST /v2/webhooks: the key's /v2 events they chose.
        INSERT INTO deliveries (event_id, webhook_id, key_id, url, next_at, created_at)
        SELECT NEW.id, w.id, w.key_id, w.url, NEW.created_at, NEW.created_at
        FROM webhooks w
        WHERE NEW.api = 'v2' AND w.key_id IS NEW.key_id AND +w.rule IS NULL
          AND EXISTS (SELECT 1 FROM json_each(w.events) WHERE value = NEW.name);
        -- A /v2 job's own webhook_url hears of its end.
        INSERT INTO deliveries (event_id, key_id, url, next_at, created_at)
        SELECT NEW.id, j.key_id, j.webhook_url, NEW.created_at, NEW.created_at
        FROM task_jobs j
        WHERE NEW.api = 'v2' AND NEW.task_id IS NULL AND NEW.name != 'job.created'
          AND j.id = NEW.job_id AND j.webhook_url IS NOT NULL;
        -- A v1 job's callback / webhook_url.
        INSERT INTO deliveries (event_id, key_id, url, next_at, created_at)
        SELECT NEW.id, j.key_id, j.webhook_url, NEW.created_at, NEW.created_at
        FROM jobs j
        WHERE NEW.api = 'v1' AND j.id = NEW.job_id AND j.webhook_url IS NOT NULL;
        -- A watch rule's webhook_url.
        INSERT INTO deliveries (event_id, webhook_id, key_id, url, next_at, created_at)
        SELECT NEW.id, w.id, w.key_id, w.url, NEW.created_at, NEW.created_at
        FROM webhooks w
        WHERE NEW.api = 'drop' AND w.rule = (SELECT rule FROM drops WHERE id = NEW.drop_id);
    END;
    """,  # /health proves the database writable by committing a real change: this one row.
    """
    CREATE TABLE health (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        checked_at REAL NOT NULL
    );
    """,
    # 6: presets saved by `convertd presets add` and POST /v2/presets (store/presets.py); the
    # built-ins live in code (presets.py), the config's in the TOML.
    """
    CREATE TABLE presets (
        name          TEXT PRIMARY KEY,
        filetype      TEXT NOT NULL,
        output_format TEXT NOT NULL,
        options       TEXT NOT NULL DEFAULT '{}',
        description   TEXT NOT NULL DEFAULT '',
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL,
        -- A watch rule naming it, written by the daemon at each start: the CLI (whatever
        -- config it is given) and the API refuse to remove it, so no restart fails for it.
        used_by       TEXT
    ) WITHOUT ROWID;
    """,
    # 7: the nodes sharing the database (issue 18, store/nodes.py). Each `convertd serve` or
    # `convertd worker` records itself as it starts and says it is alive every few seconds; a
    # job's node is the one whose worker holds it, and its jobs go back to the queue once it has
    # not been seen for node_lease_seconds. (One SQLite node has a row too, for `convertd nodes`.)
    """
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,            -- "<host>-<pid>-<random>", unique to one process
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('serve', 'worker')),
        address TEXT,                   -- where its API listens (serve)
        workers INTEGER NOT NULL,
        version TEXT NOT NULL,
        started_at REAL NOT NULL,
        seen_at REAL NOT NULL,
        stopped_at REAL                 -- a clean stop; NULL while it runs, or if it died
    );
    ALTER TABLE jobs ADD COLUMN node TEXT;  -- the node whose worker holds (or last held) it
    CREATE INDEX jobs_processing_node ON jobs (node) WHERE status = 'processing';
    -- The node that leads (cluster/leader.py), written as it takes the lead: the task engine
    -- records a task's end only while its node is the one named here.
    CREATE TABLE leader (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        node TEXT NOT NULL,
        since REAL NOT NULL
    );
    -- The mark in the shared storage folder (its .convertd-storage file), recorded by the first
    -- node: a node whose storage holds another mark, or none, is not on the others' folder
    -- (a share not mounted) and is refused before it takes a job (cluster/storage.py).
    CREATE TABLE storage (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        mark TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was written by a newer convertd; running older code on it could corrupt it."""


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to SCHEMA_VERSION, one recorded step at a time."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database is at schema version {current}, but this convertd knows only up to "
            f"{SCHEMA_VERSION}; upgrade convertd"
        )
    for version in range(current, SCHEMA_VERSION):
        # executescript() commits first, so the script and the version bump form their own
        # transaction: a crash leaves the database at either the old or the new version.
        script = MIGRATIONS[version]
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version + 1};\nCOMMIT;"
        )
        logger.info("database migrated to schema version %d", version + 1)
