"""`GET /v2/drops`: the drop folders at a glance, for an admin key: what is waiting to be taken,
what is skipped and why, what is being converted, and the latest converted and failed files.

Waiting and skipped files are the watcher's own view, live (drops/waiting.py); the rest are the
drop records (store/drops.py). Paths are shown relative to the drop root (else to the rule's
folder), and absolute paths in messages are cut the same way: the answer names no place on the
server's disk.
"""

from __future__ import annotations

import heapq
import re
import time
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from convertd import clock
from convertd.api.routes import Route
from convertd.api.state import CONFIG, DATA, DB, RULES, WAITING
from convertd.api.v2.render import iso
from convertd.api.v2.schemas import PAGING, error, many
from convertd.api.v2.tasks import one_of, page_of
from convertd.drops.places import display
from convertd.drops.rules import WatchRule
from convertd.drops.waiting import Candidate
from convertd.errors import Invalid
from convertd.store import drops
from convertd.store.keys import ADMIN_SCOPE

MAX_EACH = 100  # of each status: the page shows the latest, the CLI and the folders the rest
STATUSES = ("waiting", "skipped", "processing", "finished", "failed")
IN_PROGRESS = ("claiming", "queued", "delivering")
MAX_RULE_NAME = 200
# An absolute path left in a message once the known folders are cut: its last part is kept.
_ABSOLUTE = re.compile(r"(?:^|(?<=[\s'\"(=\[]))/[\w.~-][^\s'\"]*/([^\s'\"/]+)")


class Places:
    """Paths as the answer shows them: relative to the drop root, else to one of the folders
    a rule names, else only the file's name."""

    def __init__(self, drop_root: Path, data_dir: Path, rules: list[WatchRule]) -> None:
        folders = {p for r in rules for p in (r.folder, r.output, r.processed, r.failed)}
        self.bases = [drop_root, *sorted(folders, key=lambda p: len(p.parts), reverse=True)]
        # The root first, as path() does (a rule's folder under it keeps its part: inbox/...),
        # then the others longest first, the data dir (uploads, results) last.
        others = sorted(folders - {drop_root}, key=lambda p: len(str(p)), reverse=True)
        self.cut = [drop_root, *others, data_dir]
        self.drop_root = drop_root

    def path(self, raw: bytes | str | Path) -> str:
        path = PurePosixPath(display(raw) if isinstance(raw, bytes) else str(raw))
        for base in self.bases:
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
        return path.name

    def message(self, text: str | None) -> str | None:
        if text is None:
            return None
        for base in self.cut:
            # The folder itself is ".", a path in it is relative; /srv/drop2 is not in /srv/drop.
            text = re.sub(
                re.escape(str(base)) + r"(/|(?=[\s'\"),;\]]|$))",
                lambda m: "" if m.group(1) else ".",
                text,
            )
        return _ABSOLUTE.sub(r"\1", text)


def _entry(
    *,
    status: str,
    rule: str,
    file: str,
    message: str | None,
    drop_id: int | None = None,
    output_format: str | None = None,
    size: int | None = None,
    job_id: str | None = None,
    output: str | None = None,
    created_at: float | None = None,
    ended_at: float | None = None,
) -> dict[str, Any]:
    return {
        "id": drop_id,
        "status": status,
        "rule": rule,
        "file": file,
        "output_format": output_format,
        "size": size,
        "job_id": job_id,
        "output": output,
        "message": message,
        "created_at": iso(created_at),
        "ended_at": iso(ended_at),
    }


def _waiting(request: web.Request, places: Places, rule: str | None) -> list[dict[str, Any]]:
    candidates = [
        c for c in request.app[WAITING].candidates.values() if rule is None or c.rule.name == rule
    ]
    newest = heapq.nlargest(MAX_EACH, candidates, key=lambda c: c.first_seen)
    return [_candidate(places, c) for c in newest]


def _candidate(places: Places, cand: Candidate) -> dict[str, Any]:
    seen = clock.now() - (time.monotonic() - cand.first_seen)  # first_seen is monotonic
    return _entry(
        status="waiting",
        rule=cand.rule.name,
        file=places.path(cand.path),
        message=places.message(cand.reason or "waiting for the file to stop changing"),
        size=cand.size,
        created_at=seen,
    )


def _skipped(request: web.Request, places: Places, rule: str | None) -> list[dict[str, Any]]:
    skipped = [
        (name, path, why)
        for (name, path), why in request.app[WAITING].skipped.items()
        if rule is None or name == rule
    ]
    return [
        _entry(status="skipped", rule=name, file=places.path(path), message=places.message(why))
        for name, path, why in skipped[:MAX_EACH]
    ]


async def _recorded(
    request: web.Request, places: Places, status: str, rule: str | None
) -> list[dict[str, Any]]:
    wanted = {"processing": IN_PROGRESS, "finished": ("done",), "failed": ("failed",)}[status]
    found = await drops.latest(request.app[DB], wanted, MAX_EACH, rule)
    return [
        _entry(
            status=status,
            drop_id=d.id,
            rule=d.rule,
            file=places.path(d.source_path),
            output_format=d.output_format,
            size=d.size,
            job_id=d.job_id,
            output=places.path(d.output_path) if d.output_path and status == "finished" else None,
            message=places.message(d.error),
            created_at=d.created_at,
            ended_at=d.finished_at,
        )
        for d in found
    ]


async def listing(request: web.Request) -> web.Response:
    page = page_of(request)
    wanted = one_of(request, "filter[status]", STATUSES)
    rule = request.query.get("filter[rule]")
    if rule is not None and not 1 <= len(rule) <= MAX_RULE_NAME:
        raise Invalid(
            f"The filter[rule] parameter must be a rule's name, 1 to {MAX_RULE_NAME} characters.",
            {"filter[rule]": [f"must be 1 to {MAX_RULE_NAME} characters"]},
        )
    app = request.app
    places = Places(app[DATA].drop_root, app[DATA].root, app[RULES])
    by_status = {
        "waiting": _waiting(request, places, rule),
        "skipped": _skipped(request, places, rule),
        "processing": await _recorded(request, places, "processing", rule),
        "finished": await _recorded(request, places, "finished", rule),
        "failed": await _recorded(request, places, "failed", rule),
    }
    items = [e for s in ([wanted] if wanted else STATUSES) for e in by_status[s]]
    return page.answer(
        items[page.offset : page.offset + page.per_page],
        len(items),
        extra_meta={
            "enabled": app[CONFIG].drop_enabled,
            "rules": [r.name for r in app[RULES]],
            "counts": {s: len(e) for s, e in by_status.items()},
            "max_each": MAX_EACH,
        },
    )


DROP = {
    "type": "object",
    "required": ["status", "rule", "file"],
    "properties": {
        "id": {"type": "integer", "nullable": True},
        "status": {"type": "string", "enum": list(STATUSES)},
        "rule": {"type": "string"},
        "file": {"type": "string", "description": "relative to the drop root or rule folder"},
        "output_format": {"type": "string", "nullable": True},
        "size": {"type": "integer", "nullable": True},
        "job_id": {"type": "string", "nullable": True},
        "output": {"type": "string", "nullable": True},
        "message": {"type": "string", "nullable": True},
        "created_at": {"type": "string", "nullable": True},
        "ended_at": {"type": "string", "nullable": True},
    },
}

ROUTES = [
    Route(
        "GET",
        "/v2/drops",
        listing,
        "The drop folders at a glance (admin keys): waiting, skipped, processing, and the "
        "latest finished and failed files",
        scope=ADMIN_SCOPE,
        # The server's admin watching their own folders (the page asks every 10 s).
        counted=False,
        operation={
            "parameters": [
                {
                    "name": "filter[status]",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(STATUSES)},
                },
                {"name": "filter[rule]", "in": "query", "schema": {"type": "string"}},
                *PAGING,
            ],
            "responses": {
                "200": many("Drop folder files, by status", DROP),
                "403": error("Not an admin key"),
                "422": error("A bad filter or page"),
            },
        },
    )
]
