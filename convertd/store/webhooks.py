"""Webhook subscriptions and the outbox of deliveries.

Events are not written here: the triggers of migration 4 record one, in the transaction that
ended a job or task, and fan it out into one pending delivery per subscriber. This module keeps
the subscriptions and lets the sender (convertd/events/sender.py) take due deliveries and record
each try, so a delivery survives a restart or a kill -9 and is tried until it is answered 2xx or
its tries run out.
"""

from __future__ import annotations

import dataclasses
import json
import secrets

from convertd import clock
from convertd.store.db import Conn, Database, Row, from_row, marks
from convertd.store.keys import new_webhook_secret

# What a subscription may ask for, as CloudConvert names them.
EVENTS = ("job.created", "job.finished", "job.failed", "task.finished", "task.failed")
# What a per-job URL (v2 webhook_url, v1 callback) and a watch rule's webhook_url hear.
JOB_END = ("job.finished", "job.failed")
# At most this many deliveries to one receiver (scheme, host and port) are in flight at once,
# so a slow or dead receiver cannot take the sender's whole attention.
PER_SUBSCRIBER = 4


@dataclasses.dataclass(frozen=True)
class Webhook:
    id: str
    key_id: int | None
    url: str
    events: list[str]
    rule: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Webhook:
        return from_row(cls, row, events=json.loads(row["events"]))


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A delivery with what sending it needs: its event, and the secret that signs it."""

    id: int
    event_id: str
    event: str  # the event's name
    api: str
    job_id: str | None
    task_id: str | None
    drop_id: int | None
    event_at: float
    webhook_id: str | None
    url: str
    secret: str | None
    status: str
    attempts: int
    next_at: float | None
    rendered: bool  # its body is kept (body_of) from its first try
    last_answer: str | None
    last_at: float | None
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Delivery:
        return from_row(cls, row, rendered=bool(row["rendered"]))


_DELIVERY_COLUMNS = """d.id, d.event_id, e.name AS event, e.api, e.job_id,
        e.task_id, e.drop_id, e.created_at AS event_at, d.webhook_id, d.url,
        COALESCE(w.signing_secret, k.webhook_secret) AS secret, d.status, d.attempts,
        d.next_at, d.body IS NOT NULL AS rendered, d.last_answer, d.last_at, d.created_at"""
_DELIVERY_TABLES = """deliveries d JOIN events e ON e.id = d.event_id
    LEFT JOIN webhooks w ON w.id = d.webhook_id
    LEFT JOIN api_keys k ON k.id = d.key_id"""
_SELECT_DELIVERY = f"SELECT {_DELIVERY_COLUMNS} FROM {_DELIVERY_TABLES}"  # noqa: S608


# A key's subscriptions, at most: each event of the key is one delivery per subscription.
MAX_PER_KEY = 50


class TooMany(Exception):
    pass


async def create(
    db: Database, key_id: int | None, url: str, events: list[str]
) -> tuple[Webhook, str]:
    """Subscribe `url` to the key's `events`; returns it with its signing secret (shown once).
    TooMany if the key has MAX_PER_KEY already."""
    webhook_id = secrets.token_hex(8)
    secret = new_webhook_secret()

    def insert(conn: Conn) -> Row:
        had = conn.execute(
            "SELECT COUNT(*) FROM webhooks WHERE key_id IS NOT DISTINCT FROM ? AND rule IS NULL",
            (key_id,),
        ).fetchone()[0]
        if had >= MAX_PER_KEY:
            raise TooMany
        row: Row = conn.execute(
            """INSERT INTO webhooks (id, key_id, url, events, signing_secret, created_at)
               VALUES (?, ?, ?, ?, ?, ?) RETURNING *""",
            (webhook_id, key_id, url, json.dumps(events), secret, clock.now()),
        ).fetchone()
        return row

    return Webhook.from_row(await db.write(insert)), secret


async def of_key(db: Database, key_id: int | None, offset: int, limit: int) -> list[Webhook]:
    rows = await db.fetch_all(
        "SELECT * FROM webhooks WHERE key_id IS NOT DISTINCT FROM ? AND rule IS NULL "
        "ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
        (key_id, limit, offset),
    )
    return [Webhook.from_row(r) for r in rows]


async def count_of_key(db: Database, key_id: int | None) -> int:
    row = await db.fetch_one(
        "SELECT COUNT(*) FROM webhooks WHERE key_id IS NOT DISTINCT FROM ? AND rule IS NULL",
        (key_id,),
    )
    return int(row[0]) if row else 0


async def get_owned(db: Database, key_id: int | None, webhook_id: str) -> Webhook | None:
    row = await db.fetch_one(
        "SELECT * FROM webhooks WHERE id = ? AND key_id IS NOT DISTINCT FROM ? AND rule IS NULL",
        (webhook_id, key_id),
    )
    return Webhook.from_row(row) if row else None


def _drop(conn: Conn, webhook_ids: list[str], why: str) -> None:
    """Remove these subscriptions; their deliveries still pending are given up, with `why`."""
    conn.execute(
        f"""UPDATE deliveries SET status = 'failed', next_at = NULL, last_answer = ?
           WHERE status = 'pending' AND webhook_id IN ({marks(webhook_ids)})""",  # noqa: S608
        (why, *webhook_ids),
    )
    gone = f"DELETE FROM webhooks WHERE id IN ({marks(webhook_ids)})"  # noqa: S608
    conn.execute(gone, webhook_ids)


async def delete(db: Database, webhook_id: str) -> None:
    await db.write(lambda conn: _drop(conn, [webhook_id], "not sent: the webhook was deleted"))


async def mirror_rules(
    db: Database, rules: list[tuple[str, str, int]], *, keep_others: bool = False
) -> None:
    """The watch rules' webhooks, (rule, url, key id), as the config has them now. With
    `keep_others` (several nodes, where a node started with another config may lead for a
    while) a rule this config does not name keeps its webhook and its pending deliveries."""

    def write(conn: Conn) -> None:
        wanted = {name: (url, key_id) for name, url, key_id in rules}
        stale = [
            row["id"]
            for row in conn.execute("SELECT id, rule, url, key_id FROM webhooks WHERE rule NOTNULL")
            if wanted.get(row["rule"]) != (row["url"], row["key_id"])
            and not (keep_others and row["rule"] not in wanted)
        ]
        _drop(conn, stale, "not sent: the watch rule's webhook_url changed")
        for name, (url, key_id) in wanted.items():
            conn.execute(
                """INSERT INTO webhooks (id, key_id, url, events, rule, created_at)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (f"rule-{name}", key_id, url, json.dumps(JOB_END), name, clock.now()),
            )

    await db.write(write)


async def list_all(db: Database) -> list[tuple[Webhook, int, int]]:
    """Every subscription, with its deliveries pending and failed (for `convertd webhooks list`)."""
    rows = await db.fetch_all(
        """SELECT w.*,
              (SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = w.id
               AND d.status = 'pending') AS pending,
              (SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = w.id
               AND d.status = 'failed') AS failed
           FROM webhooks w ORDER BY w.created_at, w.id"""
    )
    return [(Webhook.from_row(r), r["pending"], r["failed"]) for r in rows]


async def due(db: Database, now: float, limit: int = 200) -> list[Delivery]:
    """Pending deliveries due by `now`, oldest first, at most PER_SUBSCRIBER per receiver
    (counting those being sent, which are still pending)."""
    rows = await db.fetch_all(
        f"""SELECT * FROM (
                SELECT {_DELIVERY_COLUMNS}, ROW_NUMBER() OVER (
                    PARTITION BY {db.dialect.receiver("d.url")} ORDER BY d.next_at, d.id) AS nth
                FROM {_DELIVERY_TABLES} WHERE d.status = 'pending' AND d.next_at <= ?) AS due
            WHERE nth <= ? ORDER BY next_at, id LIMIT ?""",  # noqa: S608
        (now, PER_SUBSCRIBER, limit),
    )
    return [Delivery.from_row(r) for r in rows]


async def next_due_at(db: Database, exclude: list[int]) -> float | None:
    """When the next pending delivery, other than those in `exclude` (being sent), is due."""
    row = await db.fetch_one(
        f"SELECT MIN(next_at) FROM deliveries WHERE status = 'pending' "  # noqa: S608
        f"AND id NOT IN ({marks(exclude)})",
        exclude,
    )
    return row[0] if row else None


async def body_of(db: Database, delivery_id: int) -> bytes | None:
    row = await db.fetch_one("SELECT body FROM deliveries WHERE id = ?", (delivery_id,))
    return bytes(row[0]) if row and row[0] is not None else None


async def set_body(db: Database, delivery_id: int, body: bytes) -> None:
    await db.write(
        lambda conn: conn.execute(
            "UPDATE deliveries SET body = ? WHERE id = ? AND body IS NULL", (body, delivery_id)
        )
    )


async def record_try(
    db: Database, delivery: Delivery, answer: str, *, delivered: bool, next_at: float | None
) -> None:
    """One try, and its answer: delivered, tried again at `next_at`, or (None) given up. Only
    on top of the tries it was read with: a stale copy records nothing."""
    status = "delivered" if delivered else ("pending" if next_at is not None else "failed")
    await db.write(
        lambda conn: conn.execute(
            """UPDATE deliveries SET attempts = attempts + 1, status = ?, next_at = ?,
                                     last_answer = ?, last_at = ?
               WHERE id = ? AND status = 'pending' AND attempts = ?""",
            (
                status,
                next_at if status == "pending" else None,
                answer,
                clock.now(),
                delivery.id,
                delivery.attempts,
            ),
        )
    )


async def recent(db: Database, *, failed_only: bool = False, limit: int = 50) -> list[Delivery]:
    where = "WHERE d.status = 'failed'" if failed_only else ""
    rows = await db.fetch_all(
        f"{_SELECT_DELIVERY} {where} ORDER BY d.id DESC LIMIT ?",
        (limit,),
    )
    return [Delivery.from_row(r) for r in rows]


async def forget_before(db: Database, cutoff: float) -> int:
    """Events older than `cutoff` with nothing left to send go, with their deliveries."""
    return int(
        await db.write(
            lambda conn: (
                conn.execute(
                    """DELETE FROM events WHERE created_at < ? AND NOT EXISTS
                   (SELECT 1 FROM deliveries d WHERE d.event_id = events.id
                    AND d.status = 'pending')""",
                    (cutoff,),
                ).rowcount
            )
        )
    )
