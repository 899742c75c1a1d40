"""The capture-website operation: a URL, or an HTML file from the task's input, as a PDF, PNG or
JPG made by the warm Chromium (browser/), under the network policy of import/url for every
request the page makes. What the page was refused is in the task's result (`capture`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from convertd.browser.capture import MAX_HTML_BYTES, CaptureFailed, Settings, capture
from convertd.browser.chromium import Chromium
from convertd.fetch import FetchError, target_host
from convertd.files import extension_of, safe_filename, stem_of
from convertd.tasks.operations import TaskFailed
from convertd.tasks.tools import keep_result

HTML = ("html", "htm", "xhtml")
SETTINGS = {field.name for field in Settings.__dataclass_fields__.values()}


def settings_of(payload: dict[str, Any]) -> Settings:
    return Settings(**{k: v for k, v in payload.items() if k in SETTINGS})


async def capture_website(
    payload: dict[str, Any],
    paths: list[Path],
    staging: Path,
    chromium: Chromium | None,
    max_pixels: int,
) -> None:
    if chromium is None or chromium.missing():
        missing = ", ".join(chromium.missing()) if chromium else "chromium"
        raise TaskFailed("ENGINE_UNAVAILABLE", f"capture-website needs {missing} on this server")
    settings = settings_of(payload)
    html = None
    if settings.url is None:
        html = await asyncio.to_thread(_html_of, paths)
        stem = stem_of(paths[0].name)
    else:
        stem = _stem_of_url(settings.url)
    name = safe_filename(payload.get("filename") or f"{stem}.{settings.output_format}")
    if extension_of(name) != settings.output_format:
        name = f"{stem_of(name)}.{settings.output_format}"
    try:
        captured = await capture(chromium, settings, staging / name, html, max_pixels)
    except CaptureFailed as exc:
        raise TaskFailed("CAPTURE_FAILED", str(exc)) from None
    await asyncio.to_thread(keep_result, staging, {"capture": captured.describe()})


def _html_of(paths: list[Path]) -> bytes:
    if len(paths) != 1:
        raise TaskFailed(
            "INVALID_INPUT", f"capture-website takes one HTML file; its input has {len(paths)}"
        )
    path = paths[0]
    if extension_of(path.name) not in HTML:
        raise TaskFailed(
            "INVALID_INPUT", f"capture-website takes an HTML file (.html), not {path.name}"
        )
    if path.stat().st_size > MAX_HTML_BYTES:
        raise TaskFailed("INVALID_INPUT", f"The HTML file is larger than {MAX_HTML_BYTES:,} bytes")
    return path.read_bytes()


def _stem_of_url(url: str) -> str:
    try:
        return safe_filename(target_host(url), default="page")
    except FetchError:
        return "page"
