"""SQLite's engine: the default, one node, the file in the data dir.

Every write is a function run by `Database.write(fn)` on the database's own writer thread
(store/writer.py), as one `BEGIN IMMEDIATE ... COMMIT` (rolled back if it raises), in the manner
of datasette's `execute_write_fn`: writes never interleave, and a transaction never starts as a
reader and later fails to upgrade ("database is locked"). Reads use a second
connection (aiosqlite) and see only committed data. The admin CLI opens the same file the same
way while the daemon runs; WAL and the busy timeout let both work.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from convertd.errors import is_disk_full
from convertd.store.db import Conn, Database, Row
from convertd.store.migrations import migrate
from convertd.store.writer import WriterThread

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    # NORMAL survives process crashes in WAL mode; only power loss can drop the last commit.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

# Less free than this where SQLite failed to grow its -shm or -wal: the disk is full. (On a
# disk with no room at all SQLite says "disk I/O error", not "database or disk is full".)
NEARLY_FULL_BYTES = 256 * 1024


def out_of_space(exc: sqlite3.Error, directory: Path) -> bool:
    """Whether SQLite failed for want of space in `directory`, where its files are: what
    errors.is_disk_full recognises, and SQLite's other way of saying it (an I/O error where
    nothing is free)."""
    code = getattr(exc, "sqlite_errorcode", 0)
    if code == sqlite3.SQLITE_FULL or is_disk_full(exc):
        return True
    if code & 0xFF != sqlite3.SQLITE_IOERR:
        return False
    try:
        return shutil.disk_usage(directory).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _connect_writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def _transaction(conn: sqlite3.Connection, fn: Callable[[Any], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        # Also when COMMIT itself failed (a full disk): a transaction left open would make
        # every later write fail. The original error is the one worth raising.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return result


class SqliteDatabase(Database):
    """One writer thread with its own connection; one reader connection."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        writer_thread: WriterThread,
        reader: aiosqlite.Connection,
    ) -> None:
        self.path = path
        self._writer = writer
        self._writer_thread = writer_thread
        self._reader = reader
        # Asked on the event loop, for `PRAGMA data_version` only (committed()); timeout=0: it
        # never waits for a lock (busy, it says it cannot tell).
        self._watch = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=0
        )

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Open (creating and migrating as needed) the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        thread = WriterThread()
        thread.start()
        writer: sqlite3.Connection | None = None
        reader: aiosqlite.Connection | None = None
        try:
            writer = await thread.call(lambda: _connect_writer(path))
            await thread.call(lambda: migrate(writer))
            reader = await aiosqlite.connect(path, isolation_level=None)
            reader.row_factory = sqlite3.Row
            for pragma in PRAGMAS:
                await reader.execute(pragma)
        except BaseException:
            if reader is not None:
                await reader.close()
            if writer is not None:
                await thread.call(writer.close)
            thread.stop()
            raise
        return cls(path, writer, thread, reader)

    async def close(self) -> None:
        self._watch.close()
        await self._reader.close()
        await self._writer_thread.call(self._writer.close)
        self._writer_thread.stop()
        await asyncio.to_thread(self._writer_thread.join)

    @property
    def where(self) -> str:
        return str(self.path)

    async def write(self, fn: Callable[[Conn], T], *, contended: bool = False) -> T:
        """Run `fn(conn)` as one write transaction on the writer thread and return its result.

        `fn` runs `BEGIN IMMEDIATE` ... `COMMIT`; if it raises, the transaction is rolled back
        and the exception comes out here. It must only use `conn`, never await, and be short:
        every other write waits for it. Cancelling the caller does not stop a write already
        handed over: it commits (or not) as if the caller were still waiting.
        """
        writer = self._writer
        return await self._writer_thread.call(lambda: _transaction(writer, fn))

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        # execute_fetchall runs, fetches and closes in one hop (a cursor costs three).
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    def committed(self) -> int | None:
        """SQLite's `PRAGMA data_version`: it changes when any other connection, in this process
        (the writer) or another (the CLI, a `sqlite3` shell), has committed. A few microseconds
        of CPU and no wait: WAL's readers take no lock a writer holds, so it is asked on the
        event loop, where a thread hop would cost ten times more. fetchall() ends the statement,
        so no read transaction stays open to hold back checkpoints."""
        try:
            return int(self._watch.execute("PRAGMA data_version").fetchall()[0][0])
        except sqlite3.Error:
            return None  # cannot tell: read from the database, as if it had changed
