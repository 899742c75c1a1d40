-- 6: presets saved by `convertd presets add` and POST /v2/presets.
CREATE TABLE presets (
    name          TEXT PRIMARY KEY,
    filetype      TEXT NOT NULL,
    output_format TEXT NOT NULL,
    options       TEXT NOT NULL DEFAULT '{}',
    description   TEXT NOT NULL DEFAULT '',
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    used_by       TEXT
);
