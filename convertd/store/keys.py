"""API keys and plans: creation, lookup by secret, revocation, plan settings.

A key is `cvd_` followed by 43 URL-safe characters (256 random bits). Only its SHA-256 is stored;
its first 12 characters are kept in clear to find the row, then the hashes are compared in
constant time. Plain SHA-256 is enough here: the secret is random, not a password to brute-force.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
import unicodedata
from typing import Any

from convertd import clock
from convertd.restrictions import normalise_allowed
from convertd.store import jobs, tasks
from convertd.store.db import Conn, Database, Row, from_row

KEY_PREFIX = "cvd_"
LOOKUP_CHARS = 12
RESTRICTIONS = ("all", "ip", "domain")
# CloudConvert's scopes; a key has all of them unless it was made with fewer.
SCOPES = ("user.read", "user.write", "task.read", "task.write", "webhook.read", "webhook.write")
# GET /metrics (api/metrics.py): only for a key made with it, since what it shows is the whole
# server's, every key's limits included.
METRICS_SCOPE = "metrics"
# What only the server's admin may see, for now the drop folders at a glance (GET /v2/drops):
# granted by name (`keys create --admin`), never by default. Not CloudConvert's user.write, which
# every key has unless it was made without it, so that CloudConvert clients keep working.
ADMIN_SCOPE = "admin"
GRANTABLE = (*SCOPES, METRICS_SCOPE, ADMIN_SCOPE)
# A key's name is logged with every request it makes: bounded, and one line.
NAME_MAX = 100
UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp"}  # controls (\n, \r, ESC), format marks, separators


class AdminError(Exception):
    """An admin request about keys or plans cannot be carried out; the message says why."""


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    api_access: bool
    calls_per_day: int | None
    calls_per_minute: int | None

    @classmethod
    def from_row(cls, row: Row) -> Plan:
        return from_row(cls, row, api_access=bool(row["api_access"]))


@dataclasses.dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    plan: Plan
    restriction_type: str
    allowed_ips: list[str]
    allowed_domains: list[str]
    usage_count: int
    last_used_at: float | None
    created_at: float
    revoked_at: float | None
    scopes: tuple[str, ...] = SCOPES
    # Signs deliveries to the URLs named per job (v2 webhook_url, v1 callback) and by watch rules.
    webhook_secret: str | None = None


# A constant, never built from input: the queries below only append a WHERE with parameters.
_SELECT_KEY = """SELECT
    k.id, k.name, k.prefix, k.key_hash, k.restriction_type, k.allowed_ips, k.allowed_domains,
    k.usage_count, k.last_used_at, k.created_at, k.revoked_at, k.scopes, k.webhook_secret,
    p.name AS plan_name, p.api_access, p.calls_per_day, p.calls_per_minute
    FROM api_keys k JOIN plans p ON p.name = k.plan
"""


def _key_from_row(row: Row) -> ApiKey:
    plan = Plan(
        name=row["plan_name"],
        api_access=bool(row["api_access"]),
        calls_per_day=row["calls_per_day"],
        calls_per_minute=row["calls_per_minute"],
    )
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        plan=plan,
        restriction_type=row["restriction_type"],
        allowed_ips=json.loads(row["allowed_ips"]),
        allowed_domains=json.loads(row["allowed_domains"]),
        usage_count=row["usage_count"],
        last_used_at=row["last_used_at"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        scopes=tuple(json.loads(row["scopes"])),
        webhook_secret=row["webhook_secret"],
    )


def describe(key: ApiKey) -> dict[str, Any]:
    """The key as `GET /v1/keys/me` shows it (the seed's fields, plus the plan name)."""
    return {
        "key_id": key.id,
        "name": key.name,
        "plan": key.plan.name,
        "restriction_type": key.restriction_type,
        "allowed_ips": key.allowed_ips,
        "allowed_domains": key.allowed_domains,
        "usage_count": key.usage_count,
        "last_used_at": clock.iso(key.last_used_at),
        "created_at": clock.iso(key.created_at),
        "scopes": list(key.scopes),
        "admin": is_admin(key),
    }


def is_admin(key: ApiKey) -> bool:
    return ADMIN_SCOPE in key.scopes


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def checked_name(name: str) -> str:
    """A key's name, stripped, if it is fit for logs and listings: 1 to NAME_MAX characters,
    none of them a control or format character (a newline would forge a log line)."""
    name = name.strip()
    if not name:
        raise AdminError("a key needs a non-empty --name")
    if len(name) > NAME_MAX:
        raise AdminError(f"a key's --name has at most {NAME_MAX} characters, not {len(name)}")
    if bad := next((c for c in name if unicodedata.category(c) in UNPRINTABLE), None):
        raise AdminError(f"a key's --name cannot hold the control character {bad!r}")
    return name


def checked_scopes(scopes: list[str], admin: bool | None) -> list[str]:
    """The scopes a key is given, once each; `admin` True adds the admin scope, False takes it
    away, None leaves the list as it is."""
    granted = [s for s in dict.fromkeys(scopes) if not (admin is False and s == ADMIN_SCOPE)]
    if admin and ADMIN_SCOPE not in granted:
        granted.append(ADMIN_SCOPE)
    if unknown := [s for s in granted if s not in GRANTABLE]:
        raise AdminError(f"unknown scope {unknown[0]!r}; use any of {', '.join(GRANTABLE)}")
    if not granted:
        raise AdminError("a key needs at least one scope")
    return granted


def checked_restriction(restriction_type: str, allowed: list[str]) -> tuple[list[str], list[str]]:
    """(allowed IPs, allowed domains) of a key restricted so, each value normalised."""
    if restriction_type not in RESTRICTIONS:
        raise AdminError(f"unknown restriction {restriction_type!r}; use one of {RESTRICTIONS}")
    if restriction_type == "all" and allowed:
        raise AdminError("--allow needs --restrict ip or --restrict domain")
    if restriction_type != "all" and not allowed:
        raise AdminError(f"--restrict {restriction_type} needs at least one --allow VALUE")
    try:
        allowed = list(dict.fromkeys(normalise_allowed(restriction_type, allowed)))  # once each
    except ValueError as exc:
        raise AdminError(str(exc)) from exc
    return (allowed if restriction_type == "ip" else []), (
        allowed if restriction_type == "domain" else []
    )


def _check_plan(conn: Conn, plan: str) -> None:
    if conn.execute("SELECT 1 FROM plans WHERE name = ?", (plan,)).fetchone() is None:
        raise AdminError(f"no plan named {plan!r}; see `convertd plans list`")


async def create_key(
    db: Database,
    name: str,
    plan: str = "basic",
    restriction_type: str = "all",
    allowed: list[str] | None = None,
    scopes: list[str] | None = None,
    *,
    admin: bool = False,
) -> tuple[ApiKey, str]:
    """Make a key; returns it with the secret, which exists nowhere else from then on. An
    `admin` key has the admin scope on top of the ones it was given (all, by default)."""
    name = checked_name(name)
    granted = checked_scopes(list(scopes or SCOPES), admin or None)  # --scope admin grants too
    ips, domains = checked_restriction(restriction_type, allowed or [])

    def insert(conn: Conn) -> tuple[int, str]:
        _check_plan(conn, plan)
        for _ in range(5):
            secret = KEY_PREFIX + secrets.token_urlsafe(32)
            row = conn.execute(
                """INSERT INTO api_keys (name, prefix, key_hash, plan, restriction_type,
                                             allowed_ips, allowed_domains, created_at, scopes,
                                             webhook_secret)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (prefix) DO NOTHING RETURNING id""",
                (
                    name,
                    secret[:LOOKUP_CHARS],
                    secret_hash(secret),
                    plan,
                    restriction_type,
                    json.dumps(ips),
                    json.dumps(domains),
                    clock.now(),
                    json.dumps(granted),
                    new_webhook_secret(),
                ),
            ).fetchone()
            if row is not None:  # else a prefix collision: draw again
                return int(row[0]), secret
        raise AdminError("could not draw a unique key; try again")

    key_id, secret = await db.write(insert)
    key = await get_key(db, key_id)
    assert key is not None
    return key, secret


async def get_key(db: Database, key_id: int) -> ApiKey | None:
    row = await db.fetch_one(
        _SELECT_KEY + " WHERE k.id = ?",
        (key_id,),
    )
    return _key_from_row(row) if row else None


async def find_by_secret(db: Database, secret: str) -> ApiKey | None:
    """The live key with this secret, or None (unknown, malformed or revoked)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    row = await db.fetch_one(
        _SELECT_KEY + " WHERE k.prefix = ? AND k.revoked_at IS NULL",
        (secret[:LOOKUP_CHARS],),
    )
    if row is None or not hmac.compare_digest(row["key_hash"], secret_hash(secret)):
        return None
    return _key_from_row(row)


async def list_keys(db: Database) -> list[ApiKey]:
    rows = await db.fetch_all(_SELECT_KEY + " ORDER BY k.id")
    return [_key_from_row(r) for r in rows]


REVOKED = "Cancelled: the API key that made this job was revoked"


async def revoke_key(db: Database, key_id: int) -> ApiKey:
    """Revoke the key and, in the same transaction, cancel its queued and running jobs (the
    daemon stops a running one within a second: WorkerPool's cancellation check)."""

    def revoke(conn: Conn) -> int:
        now = clock.now()
        changed = conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (now, key_id),
        ).rowcount
        if changed:
            jobs.fail_unfinished_of_key(conn, key_id, REVOKED)
            tasks.fail_unfinished_of_key(conn, key_id, REVOKED)
        return int(changed)

    changed = await db.write(revoke)
    key = await get_key(db, key_id)
    if key is None:
        raise AdminError(f"no key with id {key_id}; see `convertd keys list`")
    if not changed:
        raise AdminError(f"key {key_id} was already revoked")
    return key


async def change_key(
    db: Database,
    key_id: int,
    *,
    name: str | None = None,
    plan: str | None = None,
    restriction_type: str | None = None,
    allowed: list[str] | None = None,
    scopes: list[str] | None = None,
    admin: bool | None = None,
) -> tuple[ApiKey, bool]:
    """Change what a live key may do; what is not given stays. `allowed` alone replaces the
    values of the key's restriction; `restriction_type` "all" lifts it; `scopes` is the whole
    new list. Read and written in one transaction (two admins at once: one waits), and one
    commit, so the daemon reads the key afresh at its next request (store/cache.py). The key,
    and whether it changed (if it was already so, nothing is written)."""
    if (name, plan, restriction_type, allowed, scopes, admin) == (None,) * 6:
        raise AdminError(
            "nothing to change: give --plan, --name, --restrict/--allow, --scope or --admin"
        )
    new_name = None if name is None else checked_name(name)

    def change(conn: Conn) -> bool:
        row = conn.execute(_SELECT_KEY + " WHERE k.id = ?", (key_id,)).fetchone()
        if row is None:
            raise AdminError(f"no key with id {key_id}; see `convertd keys list`")
        current = _key_from_row(row)
        if current.revoked_at is not None:
            raise AdminError(f"key {key_id} is revoked; make a new one with `convertd keys create`")
        restriction = restriction_type or current.restriction_type
        values = allowed
        if values is None and restriction == current.restriction_type:
            values = current.allowed_ips or current.allowed_domains
        ips, domains = checked_restriction(restriction, values or [])
        granted = checked_scopes(list(current.scopes) if scopes is None else scopes, admin)
        if plan is not None:
            _check_plan(conn, plan)
        new = (new_name or current.name, plan or current.plan.name, restriction)
        old = (current.name, current.plan.name, current.restriction_type)
        # Values and scopes are sets: the same ones in another order change nothing.
        lists = (ips, domains, granted)
        now = (current.allowed_ips, current.allowed_domains, current.scopes)
        if new == old and all(set(a) == set(b) for a, b in zip(lists, now, strict=True)):
            return False  # already so: no write, no commit
        conn.execute(
            """UPDATE api_keys SET name = ?, plan = ?, restriction_type = ?, allowed_ips = ?,
                   allowed_domains = ?, scopes = ? WHERE id = ?""",
            (*new, json.dumps(ips), json.dumps(domains), json.dumps(granted), key_id),
        )
        return True

    changed = await db.write(change)
    key = await get_key(db, key_id)
    assert key is not None
    return key, changed


async def rotate_webhook_secret(db: Database, key_id: int) -> str:
    """A new webhook secret for the key; deliveries not yet sent are signed with it."""
    secret = new_webhook_secret()
    changed = await db.write(
        lambda conn: (
            conn.execute(
                "UPDATE api_keys SET webhook_secret = ? WHERE id = ?", (secret, key_id)
            ).rowcount
        )
    )
    if not changed:
        raise AdminError(f"no key with id {key_id}; see `convertd keys list`")
    return secret


async def list_plans(db: Database) -> list[Plan]:
    rows = await db.fetch_all("SELECT * FROM plans ORDER BY name")
    return [Plan.from_row(r) for r in rows]


UNSET: Any = object()


async def set_plan(
    db: Database,
    name: str,
    *,
    api_access: bool | None = None,
    calls_per_day: int | None = UNSET,
    calls_per_minute: int | None = UNSET,
) -> Plan:
    """Create or change a plan; limits given as None mean unlimited, unset ones stay as they are."""
    if not name.strip() or len(name) > 64:
        raise AdminError("a plan needs a name of 1 to 64 characters")
    for label, value in (("calls-per-day", calls_per_day), ("calls-per-minute", calls_per_minute)):
        if value is not UNSET and value is not None and value < 0:
            raise AdminError(f"--{label} must be 0 or more, or 'unlimited'")

    def upsert(conn: Conn) -> None:
        conn.execute(
            """INSERT INTO plans (name, api_access, calls_per_day, calls_per_minute)
               VALUES (?, 0, NULL, NULL) ON CONFLICT (name) DO NOTHING""",
            (name,),
        )
        if api_access is not None:
            conn.execute("UPDATE plans SET api_access = ? WHERE name = ?", (int(api_access), name))
        if calls_per_day is not UNSET:
            conn.execute("UPDATE plans SET calls_per_day = ? WHERE name = ?", (calls_per_day, name))
        if calls_per_minute is not UNSET:
            conn.execute(
                "UPDATE plans SET calls_per_minute = ? WHERE name = ?", (calls_per_minute, name)
            )

    await db.write(upsert)
    row = await db.fetch_one("SELECT * FROM plans WHERE name = ?", (name,))
    assert row is not None
    return Plan.from_row(row)
