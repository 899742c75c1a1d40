"""`GET /health` and `GET /health/live`: keyless answers for Uptime Kuma, a container's health
check and systemd.

`/health` runs four named checks and answers 200 when all pass, 503 naming the failing ones:

- database: a real write commits (store/health.py), within DB_TIMEOUT_SECONDS;
- workers: every worker's loop runs, and no job has outlived its time limit by a minute;
- disk: the data dir's file system has `health_min_free_bytes` free (default 1 GiB);
- tools: the programs `health_tools` names are on PATH (default the converters' ffmpeg,
  ffprobe, pdftoppm and LibreOffice). The optional ones (Chromium, qpdf, OCRmyPDF, Tesseract)
  only take away some operations: their absence is a warning, not a failure.

It stays cheap under polling: one database write at most every CACHE_SECONDS however many ask
(callers meanwhile share it), a statvfs, and PATH lookups remembered for
converters.base.TOOL_CHECK_SECONDS (10 s): a tool removed from PATH fails the check within that
long. `/health/live` touches nothing: it answers whenever the process serves requests.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from typing import Any

from aiohttp import web

from convertd.api.routes import Route
from convertd.api.state import CONFIG, DATA, DB, POOL
from convertd.converters.base import tool_present
from convertd.store import health
from convertd.store.db import DATABASE_OR_OS

logger = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
DB_TIMEOUT_SECONDS = 5.0
# Other names a tool is installed under.
ALIASES = {
    "soffice": ("soffice", "libreoffice"),
    "chromium": ("chromium", "chromium-browser"),
}
# Missing, these only take away an operation each: reported, never a failure unless listed in
# health_tools.
OPTIONAL = {
    "chromium": "capture-website and engine chromium",
    "qpdf": "merge and optimize of PDFs",
    "ocrmypdf": "ocr",
    "tesseract": "ocr",
}


class DatabaseProbe:
    """The last write probe's outcome, reused for CACHE_SECONDS; one probe at a time."""

    def __init__(self) -> None:
        self._checked = -CACHE_SECONDS
        self._outcome: tuple[bool, str] = (False, "not checked yet")
        self._running: asyncio.Future[tuple[bool, str]] | None = None

    async def check(self, app: web.Application) -> tuple[bool, str]:
        if time.monotonic() - self._checked < CACHE_SECONDS:
            return self._outcome
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._probe(app))
        # Shielded: a client that hangs up does not cancel the probe the others wait for.
        return await asyncio.shield(self._running)

    async def _probe(self, app: web.Application) -> tuple[bool, str]:
        start = time.monotonic()
        try:
            async with asyncio.timeout(DB_TIMEOUT_SECONDS):
                await health.write_probe(app[DB])
        except TimeoutError:
            outcome = (False, f"a write did not commit within {DB_TIMEOUT_SECONDS:.0f} s")
        except DATABASE_OR_OS as exc:
            outcome = (False, f"a write failed: {exc}")
        else:
            outcome = (True, f"a write committed in {(time.monotonic() - start) * 1000:.1f} ms")
        self._checked, self._outcome = time.monotonic(), outcome
        return outcome


PROBE = web.AppKey("health_probe", DatabaseProbe)


class Transitions:
    """Logs a check that starts failing (a warning) and one that recovers, once each, not
    every answer that finds it so."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    def note(self, checks: dict[str, dict[str, Any]]) -> None:
        for name, check in checks.items():
            if not check["ok"] and name not in self.failing:
                logger.warning("health: %s check failing: %s", name, check["detail"])
                self.failing.add(name)
            elif check["ok"] and name in self.failing:
                logger.info("health: %s check passes again: %s", name, check["detail"])
                self.failing.discard(name)


TRANSITIONS = web.AppKey("health_transitions", Transitions)


def _present(tool: str, configured_chromium: str | None) -> bool:
    if tool == "chromium" and configured_chromium:
        return tool_present(configured_chromium)
    return any(tool_present(name) for name in ALIASES.get(tool, (tool,)))


def tools_check(required: tuple[str, ...], chromium: str | None) -> dict[str, Any]:
    missing = [tool for tool in required if not _present(tool, chromium)]
    optional = [
        f"{tool} (no {what})"
        for tool, what in OPTIONAL.items()
        if tool not in required and not _present(tool, chromium)
    ]
    if missing:
        detail = f"missing from PATH: {', '.join(missing)}"
    else:
        detail = f"{', '.join(required)} present" if required else "none required"
    result: dict[str, Any] = {"ok": not missing, "detail": detail, "missing": missing}
    if optional:
        result["optional_missing"] = optional
    return result


def disk_check(app: web.Application) -> dict[str, Any]:
    wanted = app[CONFIG].health_min_free_bytes
    try:
        free = shutil.disk_usage(app[DATA].root).free
    except OSError as exc:
        return {"ok": False, "detail": f"the data dir cannot be measured: {exc.strerror}"}
    return {
        "ok": free >= wanted,
        "detail": f"{_size(free)} free in the data dir; at least {_size(wanted)} wanted",
        "free_bytes": free,
    }


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


async def health_status(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    db_ok, db_detail = await app[PROBE].check(app)
    workers_ok, workers_detail = app[POOL].health()
    checks: dict[str, dict[str, Any]] = {
        "database": {"ok": db_ok, "detail": db_detail},
        "workers": {"ok": workers_ok, "detail": workers_detail},
        "disk": disk_check(app),
        "tools": tools_check(config.health_tools, config.chromium),
    }
    app[TRANSITIONS].note(checks)
    failing = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "failing" if failing else "ok", "failing": failing, "checks": checks}
    headers = {"Cache-Control": "no-store"}
    if "database" in failing:  # an outage that passes, as the API's own 503 says
        headers["Retry-After"] = "5"
    return web.json_response(body, status=503 if failing else 200, headers=headers)


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


ROUTES: list[Route] = [
    Route(
        "GET",
        "/health",
        health_status,
        "Named checks: database writable, workers alive, free disk, tools present (200 or 503)",
        public=True,
    ),
    Route("GET", "/health/live", live, "200 whenever the process serves requests", public=True),
]
