"""`GET /v1/formats`: what this machine can convert, from the converter registry."""

from __future__ import annotations

from aiohttp import web

from convertd.api.state import REGISTRY


async def formats(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "filetypes": request.app[REGISTRY].formats()})
