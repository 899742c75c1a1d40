"""The store's SQL as PostgreSQL reads it: `?` parameters numbered, the dialect's fragments,
and the cursor a write function gets back."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import asyncpg

from convertd.store.db import Dialect

_PARAM = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?")


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """SQLite's `?` parameters as PostgreSQL's `$1, $2, ...` (none inside quotes)."""
    counter = iter(range(1, 10_000))

    def number(match: re.Match[str]) -> str:
        text = match.group(0)
        return f"${next(counter)}" if text == "?" else text

    return _PARAM.sub(number, sql)


POSTGRES = Dialect(
    name="postgresql",
    json_items="json_array_elements_text(({expr})::json) AS {alias}(value)",
    url_receiver=(
        "CASE WHEN strpos(substr({0}, 9), '/') > 0"
        " THEN substr({0}, 1, 7 + strpos(substr({0}, 9), '/'))"
        " ELSE CASE WHEN strpos(substr({0}, 9), '?') > 0"
        " THEN substr({0}, 1, 7 + strpos(substr({0}, 9), '?')) ELSE {0} END END"
    ),
    greatest="GREATEST",
    insertion_order="seq",  # an identity column of jobs and tasks (schema_postgres.py)
    skip_locked="FOR UPDATE SKIP LOCKED",
    now="CAST(extract(epoch FROM clock_timestamp()) AS DOUBLE PRECISION)",
)


class Cursor:
    """What a write function gets back from `execute`: SQLite's cursor, as far as it is used."""

    def __init__(self, rows: list[asyncpg.Record], status: str) -> None:
        self._rows = rows
        self._next = 0
        # "UPDATE 3", "INSERT 0 1", "DELETE 0", "SELECT 2": the count is the last word.
        last = status.rsplit(" ", 1)[-1] if status else ""
        self.rowcount = int(last) if last.isdigit() else -1

    def fetchone(self) -> asyncpg.Record | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[asyncpg.Record]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[asyncpg.Record]:
        return iter(self.fetchall())
