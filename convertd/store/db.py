"""The database: what the store asks of either engine (Database), and SQLite's engine.

SQLite, in the data dir, is the default: one node, no configuration. PostgreSQL
(store/postgres.py) is the engine of several nodes; store/engines.open_database picks by what
it is given.

Every write is a function run by `Database.write(fn)` on the database's own writer thread, as
one `BEGIN IMMEDIATE ... COMMIT` (rolled back if it raises), in the manner of datasette's
`execute_write_fn`. Writes never interleave (the thread runs one at a time, in order), a
transaction never starts as a reader and later fails to upgrade ("database is locked"), and a
whole transaction costs one hop off the event loop: a queue and a thread of our own, as lean as
aiosqlite's (a thread pool costs a tenth more per write, measured here). Reads use a second
connection (aiosqlite) and see only committed data. The admin CLI opens the same file the same
way while the daemon runs; WAL and the busy timeout let both work.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import queue
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiosqlite
import asyncpg

from convertd.errors import is_disk_full
from convertd.store.migrations import migrate

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")

BUSY_TIMEOUT_MS = 10_000
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    # NORMAL survives process crashes in WAL mode; only power loss can drop the last commit.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)


class Row(Protocol):
    """A row of either engine (sqlite3.Row, asyncpg.Record): by column name or position."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Any: ...


class Conn(Protocol):
    """The connection a write function is given, on either engine."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Dialect:
    """The few things the engines spell differently, as SQL fragments with `{}` for the
    expression they apply to."""

    name: str
    json_items: str  # a table `{alias}` of one column, `value`: a JSON array's strings
    # The receiver a delivery goes to: its URL's scheme, host and port ("http://h:1/a?b" ->
    # "http://h:1"), found after the "//" (checked to be an http or https URL when given).
    url_receiver: str
    greatest: str  # the larger of two values: SQLite's two-argument max(), GREATEST elsewhere
    # A table's rows in the order they were inserted (a tie-break for equal timestamps).
    insertion_order: str
    skip_locked: str  # a claim's select passes over rows another node is claiming

    def json_values(self, expr: str, alias: str) -> str:
        return self.json_items.format(expr=expr, alias=alias)

    def receiver(self, expr: str) -> str:
        return self.url_receiver.format(expr)


SQLITE = Dialect(
    name="sqlite",
    json_items="json_each({expr}) AS {alias}",
    url_receiver=(
        "CASE WHEN instr(substr({0}, 9), '/') > 0"
        " THEN substr({0}, 1, 7 + instr(substr({0}, 9), '/'))"
        " ELSE CASE WHEN instr(substr({0}, 9), '?') > 0"
        " THEN substr({0}, 1, 7 + instr(substr({0}, 9), '?')) ELSE {0} END END"
    ),
    greatest="max",
    insertion_order="rowid",
    skip_locked="",  # one writer at a time: nothing is ever locked by another
)


def marks(values: Iterable[Any]) -> str:
    """`?, ?, ?`: one parameter per value, for `IN (...)` (never empty: `NULL` matches none)."""
    n = len(list(values))
    return ", ".join("?" * n) if n else "NULL"


# What a database that cannot answer, or cannot take a write now (a full disk, a server gone),
# raises on either engine; and any error of either engine (both with OSError, which a file
# beside the database raises).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InsufficientResourcesError,
    asyncpg.QueryCanceledError,
    ConnectionError,
)
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ConnectionError,
)
UNAVAILABLE_OR_OS: tuple[type[BaseException], ...] = (*UNAVAILABLE, OSError)
DATABASE_OR_OS: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, OSError)


def dialect_of(conn: Conn) -> Dialect:
    """The dialect of a write function's connection (only PostgreSQL's says)."""
    dialect = getattr(conn, "dialect", SQLITE)
    assert isinstance(dialect, Dialect)
    return dialect


class Unreachable(ConnectionError):
    """The database server could not be reached or refused us; the message says which."""


def shown(where: Path | str) -> str:
    """Where a database is, for logs and messages: a URL's password never shows."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", str(where))


def is_database_url(where: object) -> bool:
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


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


def from_row(cls: type[D], row: Row, **converted: Any) -> D:
    """A record made from the row's columns of its fields' names; `converted` gives the fields
    whose column needs more than a copy (JSON, enums, booleans)."""
    values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name not in converted}
    return cls(**values, **converted)


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


class _WriterThread(threading.Thread):
    """Runs calls one at a time, in order, and hands each result back to its event loop."""

    def __init__(self) -> None:
        super().__init__(name="db-writer", daemon=True)
        self._calls: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # In the caller's context: a line logged by the write names the request and job.
        self._calls.put((loop, future, functools.partial(contextvars.copy_context().run, fn)))
        return future

    def run(self) -> None:
        while (item := self._calls.get()) is not None:
            loop, future, fn = item
            try:
                outcome: tuple[Any, BaseException | None] = (fn(), None)
            except BaseException as exc:
                outcome = (None, exc)
            # A loop that has closed meanwhile (a CLI command ending) has no one left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def stop(self) -> None:
        self._calls.put(None)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the call ran anyway
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class LeaderLock:
    """A lock at most one node holds (store/postgres.py has the real one). On SQLite there is
    one node per database, which the data dir's lock makes sure of: it always leads."""

    async def try_take(self) -> bool:
        return True

    async def still_held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class Database:
    """What the store asks of an engine: one way to write (a function of a connection, as one
    transaction) and reads of committed data."""

    dialect: Dialect = SQLITE

    @property
    def where(self) -> str:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def write(self, fn: Callable[[Conn], T], *, contended: bool = False) -> T:
        """Run `fn(conn)` as one write transaction and return its result.

        `fn` must only use `conn`, never await, and be short; it may be run more than once
        (PostgreSQL runs a write again when it met another node's), so it has no other effect.
        If it raises, the transaction is rolled back and the exception comes out here.
        `contended`: a single statement written to be exact without serializable isolation (a
        claim, a count), which many nodes run at once."""
        raise NotImplementedError

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        raise NotImplementedError

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def leader_lock(self, key: int) -> LeaderLock:
        """The lock on `key` that one node of those sharing the database holds at a time."""
        return LeaderLock()

    async def listen(self, channel: str, heard: Callable[[str], None]) -> Callable[[], Any]:
        """Call `heard(message)` for each message another node sends on `channel`, until the
        returned coroutine function is awaited. With one node there is no one to hear from."""

        async def stop() -> None:
            return None

        return stop

    async def send(self, channel: str, message: str) -> None:
        """Tell the nodes listening on `channel` (none on SQLite)."""
        return None


class SqliteDatabase(Database):
    """One writer thread with its own connection; one reader connection."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        writer_thread: _WriterThread,
        reader: aiosqlite.Connection,
    ) -> None:
        self.path = path
        self._writer = writer
        self._writer_thread = writer_thread
        self._reader = reader

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Open (creating and migrating as needed) the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        thread = _WriterThread()
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

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        # The first row, for queries that select one (by key): one hop to the reader thread.
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        # execute_fetchall runs, fetches and closes in one hop (a cursor costs three).
        return list(await self._reader.execute_fetchall(sql, tuple(params)))
