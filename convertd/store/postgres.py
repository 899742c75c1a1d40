"""The PostgreSQL engine (asyncpg), for several nodes sharing one queue: the same Database as
SQLite's (store/db.py), so nothing above the store knows which engine it runs on.

Writes keep SQLite's shape: a plain function of a connection, run on this process's writer
thread as one transaction. The thread drives its own asyncpg connection on a private event
loop, so the store's write functions stay synchronous and short, and never await. Across nodes
there is no single writer any more, so a write runs SERIALIZABLE and is run again when
PostgreSQL reports a conflict: logic that was right under SQLite's one-writer lock stays right
with three nodes writing at once. The hot single-statement writes that must not contend (a
worker's claim, a quota count) ask for READ COMMITTED instead; they are written to be exact
under it (`FOR UPDATE SKIP LOCKED`, an upsert's row lock). Reads go through a small pool on the
daemon's own loop and see committed data, as SQLite's reader does.

The store writes SQL once, in the dialect both engines read: `?` parameters (numbered here),
`ON CONFLICT`, `RETURNING`. What is not common is chosen by `Database.dialect`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import asyncpg

from convertd.store.db import Conn, Database, LeaderLock, Row, Unreachable, shown
from convertd.store.postgres_sql import POSTGRES, Cursor, numbered
from convertd.store.schema_postgres import migrate_postgres
from convertd.store.writer import WriterThread

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A write that meets another node's is run again, this many times at most.
MAX_ATTEMPTS = 30
# A plan prepared before another node's migration is stale: prepared again, the write runs again.
RETRIED = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.InvalidCachedStatementError,
)
PREPARED_STATEMENTS = 256
# A connection that failed with these is in no state to be used again.
BROKEN = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    ConnectionError,
    asyncio.TimeoutError,
)
READ_POOL_SIZE = 4
CONNECT_TIMEOUT_SECONDS = 10.0
# The same busy wait as SQLite's: a statement stuck behind a lock this long fails.
STATEMENT_TIMEOUT_MS = 10_000
# A node stopped in the middle of a write (SIGSTOP, a hung machine) holds its row locks; the
# server ends its transaction after this long, so the other nodes go on.
IDLE_IN_TRANSACTION_MS = 15_000
LISTEN_CHECK_SECONDS = 5.0
# A job's end waits this long for a server that is restarting or cut off (db.patiently).
RECORD_PATIENCE_SECONDS = 600.0


class Connection:
    """The writer's connection as a write function sees it: `execute` and `executemany`, run to
    completion on the writer thread's own loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: asyncpg.Connection) -> None:
        self._loop = loop
        self._conn = conn
        self.dialect = POSTGRES
        # Prepared once per connection: a statement then costs one round trip, not two.
        self._prepared: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Cursor:
        async def go() -> Cursor:
            statement = self._prepared.get(sql)
            if statement is None:
                statement = self._prepared[sql] = await self._conn.prepare(numbered(sql))
                if len(self._prepared) > PREPARED_STATEMENTS:
                    self._prepared.popitem(last=False)
            else:
                self._prepared.move_to_end(sql)
            rows = await statement.fetch(*params)
            return Cursor(rows, statement.get_statusmsg())

        cursor: Cursor = self._run(go())
        return cursor

    def command(self, sql: str) -> None:
        """A statement of no parameters and no rows (BEGIN, COMMIT): one round trip."""
        self._run(self._conn.execute(sql))

    def forget_prepared(self) -> None:
        self._prepared.clear()

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        args = [tuple(row) for row in rows]
        if args:
            self._run(self._conn.executemany(numbered(sql), args))

    @property
    def raw(self) -> asyncpg.Connection:
        return self._conn


class _WriterThread(WriterThread):
    """One connection, one transaction at a time, on a loop of its own."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self.loop = asyncio.new_event_loop()
        self.conn: Connection | None = None

    def started(self) -> None:
        asyncio.set_event_loop(self.loop)

    def finished(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.conn.raw.close(timeout=5))
        self.loop.close()

    def connect(self) -> None:
        raw = self.loop.run_until_complete(_connect(self._url))
        self.conn = Connection(self.loop, raw)

    def transaction(self, fn: Callable[[Conn], T], isolation: str) -> T:
        if self.conn is None or self.conn.raw.is_closed():
            # The server ended the last one (restarted, or this node was stopped mid-write
            # longer than IDLE_IN_TRANSACTION_MS): a new one, for this write and the next.
            self.connect()
        conn = self.conn
        assert conn is not None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            conn.command(f"BEGIN ISOLATION LEVEL {isolation}")
            try:
                result = fn(conn)
                conn.command("COMMIT")
                return result
            except RETRIED as exc:
                self._rollback(conn)
                if isinstance(exc, asyncpg.InvalidCachedStatementError):
                    conn.forget_prepared()
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.debug("write met another node's; running it again (%d)", attempt)
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, BROKEN):
                    # Mid-operation when it broke: never used again (the next write connects).
                    conn.raw.terminate()
                raise
        raise AssertionError("unreachable")

    @staticmethod
    def _rollback(conn: Connection) -> None:
        if conn.raw.is_in_transaction():
            with contextlib.suppress(Exception):
                conn.command("ROLLBACK")


SETTINGS = {
    "statement_timeout": str(STATEMENT_TIMEOUT_MS),
    "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
    "application_name": "convertd",
}


@contextlib.contextmanager
def _reaching() -> Iterator[None]:
    """A new connection's socket failing (refused, reset, timed out) raises Unreachable, so
    that only what comes from the database is taken for the database being down (db.py)."""
    try:
        yield
    except Unreachable:
        raise
    except OSError as exc:
        raise _unreachable(exc) from exc


def _unreachable(exc: OSError) -> Unreachable:
    return Unreachable(str(exc) or type(exc).__name__)


async def _connect(url: str, **settings: str) -> asyncpg.Connection:
    with _reaching():
        return await asyncpg.connect(
            url, timeout=CONNECT_TIMEOUT_SECONDS, server_settings={**SETTINGS, **settings}
        )


class PostgresDatabase(Database):
    """One writer connection on its own thread; a small pool of readers on the daemon's loop."""

    def __init__(self, url: str, writer: _WriterThread, readers: asyncpg.Pool) -> None:
        self.url = url
        self.dialect = POSTGRES
        self.shared = True
        self.patience = RECORD_PATIENCE_SECONDS
        self._writer = writer
        self._readers = readers

    @classmethod
    async def connect(cls, url: str) -> PostgresDatabase:
        writer = _WriterThread(url)
        writer.start()
        readers: asyncpg.Pool | None = None
        try:
            try:
                await writer.call(writer.connect)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                raise Unreachable(f"cannot use the database at {shown(url)}: {exc}") from None
            conn = writer.conn
            assert conn is not None
            await writer.call(lambda: writer.loop.run_until_complete(migrate_postgres(conn.raw)))
            readers = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=READ_POOL_SIZE,
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings=SETTINGS,
            )
        except BaseException:
            if readers is not None:
                await readers.close()
            writer.stop()
            raise
        return cls(url, writer, readers)

    @property
    def where(self) -> str:
        """The URL without its password, for logs and messages."""
        return shown(self.url)

    async def close(self) -> None:
        await self._readers.close()
        self._writer.stop()
        await asyncio.to_thread(self._writer.join)

    async def write(self, fn: Callable[[Conn], T], *, contended: bool = False) -> T:
        isolation = "READ COMMITTED" if contended else "SERIALIZABLE"
        writer = self._writer
        return await writer.call(lambda: writer.transaction(fn, isolation))

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        args = tuple(params)
        if any(isinstance(arg, str) and "\x00" in arg for arg in args):
            # PostgreSQL's text cannot hold NUL, so nothing stored equals such a value; SQLite
            # finds nothing for it either. Refused, it would be an error instead of "not found".
            return []
        try:  # not _reaching(): a try costs nothing on the read path, a context manager ~1 us
            return list(await self._readers.fetch(numbered(sql), *args))
        except OSError as exc:  # the pool connects anew after the server restarted
            raise _unreachable(exc) from exc

    def leader_lock(self, key: int) -> LeaderLock:
        return _AdvisoryLock(self.url, key)

    async def listen(self, channel: str, heard: Callable[[str], None]) -> Callable[[], Any]:
        def callback(_conn: Any, _pid: int, _channel: str, message: str) -> None:
            heard(message)

        async def listening() -> asyncpg.Connection:
            # A connection of its own: a pooled one would be handed back mid-listen.
            conn = await _connect(self.url)
            await conn.add_listener(channel, callback)
            return conn

        held = [await listening()]

        async def keep() -> None:
            # The server may end the connection (restarted, or this node was stopped): listen
            # again. What was said meanwhile is lost; waiters look again on their own timers.
            while True:
                await asyncio.sleep(LISTEN_CHECK_SECONDS)
                if held[0].is_closed():
                    try:
                        held[0] = await listening()
                        logger.info("listening for other nodes' changes again")
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        logger.warning("cannot listen for other nodes' changes (%s)", exc)

        keeper = asyncio.create_task(keep(), name=f"listen-{channel}")

        async def stop() -> None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(Exception):
                await held[0].close(timeout=5)

        return stop

    async def send(self, channel: str, message: str) -> None:
        with _reaching():
            await self._readers.execute("SELECT pg_notify($1, $2)", channel, message)


class _AdvisoryLock(LeaderLock):
    """A session-level advisory lock on a connection of its own, held as long as the connection
    lives. The server ends the connection, and so frees the lock, when the node stops talking:
    the node asks `still_held` every few seconds, so a node stopped or cut off for LOST_AFTER
    loses the lock (idle_session_timeout, or TCP keepalives for a machine that went away), and
    another node takes it."""

    LOST_AFTER_SECONDS = 15

    def __init__(self, url: str, key: int) -> None:
        self._url = url
        self._key = key
        self._conn: asyncpg.Connection | None = None

    async def try_take(self) -> bool:
        for fresh in (False, True):
            if fresh or self._conn is None or self._conn.is_closed():
                await self.release()
                self._conn = await _connect(
                    self._url,
                    idle_session_timeout=str(self.LOST_AFTER_SECONDS * 1000),
                    tcp_keepalives_idle="5",
                    tcp_keepalives_interval="2",
                    tcp_keepalives_count="3",
                )
            try:
                taken = await self._conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", self._key, timeout=CONNECT_TIMEOUT_SECONDS
                )
                return bool(taken)
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                    asyncpg.IdleSessionTimeoutError, ConnectionError):  # fmt: skip
                if fresh:
                    raise
                # The server ended the session (this node was stopped, or it restarted): again,
                # on a new one.
        return False

    async def still_held(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            return False
        try:
            # Whether the session (and so its lock) is still the server's.
            await self._conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_SECONDS)
            return True
        except Exception:
            await self.release()
            return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
