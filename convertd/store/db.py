"""The database, as the store asks it of either engine: one way to write (a function of a
connection, as one transaction), reads of committed data, the few SQL fragments the engines
spell differently (Dialect), and what their failures mean.

SQLite (store/sqlite.py), in the data dir, is the default: one node, no configuration.
PostgreSQL (store/postgres.py) is the engine of several nodes; store/engines.open_database
picks by what it is given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import asyncpg

from convertd.periodic import quiet_failures

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

logger = logging.getLogger(__name__)
T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")


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
    # The time now in unix seconds, by the database's clock: what nodes' leases are measured
    # on, so that two nodes' clocks disagreeing cannot make a live one look lost.
    now: str

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
    now="((julianday('now') - 2440587.5) * 86400.0)",
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
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    ConnectionError,
)
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ConnectionError,
)


class Unreachable(ConnectionError):
    """The database server could not be reached or refused us; the message says which. The
    engine raises it for the socket's own errors (a refused or reset connection), which are not
    otherwise the database's: a client that drops its upload raises ConnectionResetError too."""


# The database server is not there (down, restarting, unreachable, or SQLite busy past its
# timeout): a moment's trouble, not a fault of the request. Only what the engines raise.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    Unreachable,
)


def is_database_down(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    return isinstance(exc, DATABASE_DOWN)


UNAVAILABLE_OR_OS: tuple[type[BaseException], ...] = (*UNAVAILABLE, OSError)
DATABASE_OR_OS: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, OSError)


async def patiently(attempt: Callable[[], Awaitable[T]], patience: float, what: str) -> T | None:
    """`attempt()`, tried again while the database cannot take it (UNAVAILABLE: a full disk, a
    server restarting), waiting longer each time, for up to `patience` seconds; None if it never
    could. How a job's or a task's end is recorded: the work is done, and must not be lost to a
    moment's outage."""
    loop = asyncio.get_running_loop()
    given_up_at = loop.time() + patience
    failures = 0
    while True:
        try:
            return await attempt()
        except UNAVAILABLE as exc:
            failures += 1
            wait = min(2.0 ** (failures - 1), 30.0)
            if loop.time() + wait > given_up_at:
                logger.error("gave up on %s after %d attempts (%s)", what, failures, exc)
                return None
            logger.warning("the database could not take %s (%s); attempt %d", what, exc, failures)
            await asyncio.sleep(wait)


def dialect_of(conn: Conn) -> Dialect:
    """The dialect of a write function's connection (only PostgreSQL's says)."""
    dialect = getattr(conn, "dialect", SQLITE)
    assert isinstance(dialect, Dialect)
    return dialect


# A background loop that meets these says so in one line, without a traceback.
quiet_failures(*DATABASE_DOWN)


def shown(where: Path | str) -> str:
    """Where a database is, for logs and messages: a URL's password never shows."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", str(where))


def is_database_url(where: object) -> bool:
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


def from_row(cls: type[D], row: Row, **converted: Any) -> D:
    """A record made from the row's columns of its fields' names; `converted` gives the fields
    whose column needs more than a copy (JSON, enums, booleans)."""
    values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name not in converted}
    return cls(**values, **converted)


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
    # Whether several nodes may share it (PostgreSQL): the one question the cluster's parts ask.
    shared: bool = False
    # How long a job's end waits for the database to take it (patiently()): a full disk is
    # worth a few tries; a database server restarting, minutes.
    patience: float = 15.0

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
        """The first row, for queries that select one (by key)."""
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def committed(self) -> int | None:
        """A number that changes whenever anything is committed to the database, by this
        process or any other, read without waiting; None where the engine cannot tell so
        cheaply (PostgreSQL), so that nothing read from it is kept (store/cache.py)."""
        return None

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
