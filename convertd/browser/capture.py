"""What a capture does with a page: load a URL (or one HTML file) in a fresh context of the
warm Chromium, wait as asked, and print it to PDF or take a PNG or JPG of it.

Everything is bounded: the whole capture by the browser's timeout, the page's requests and
bytes by network.Gate, a screenshot's height by MAX_SHOT_HEIGHT and the pixel limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from convertd.browser.chromium import Chromium
from convertd.browser.network import LOCAL_URL, Gate

MAX_SHOT_HEIGHT = 16384
MAX_SHOT_PIXELS = 25_000_000  # a 4000 px wide shot is at most 6,250 px tall
# An HTML file has no address worth printing: its header and footer say the title and pages.
LOCAL_HEADER = '<div style="font-size:8px;margin:0 10mm"><span class="title"></span></div>'
LOCAL_FOOTER = (
    '<div style="font-size:8px;margin:0 10mm;width:100%;text-align:right">'
    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
)
MAX_HTML_BYTES = 20 * 1024 * 1024
WAIT_STATES = {
    "load": "load",
    "domcontentloaded": "domcontentloaded",
    # Playwright knows one "network idle": no request for 500 ms.
    "networkidle0": "networkidle",
    "networkidle2": "networkidle",
}


class CaptureFailed(Exception):
    """The page could not be captured; the message says why, in the user's terms."""


@dataclasses.dataclass(frozen=True)
class Settings:
    output_format: str = "pdf"  # pdf, png or jpg
    url: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    wait_until: str = "load"
    wait_for_element: str | None = None
    wait_time: int = 0  # ms after the page loaded
    zoom: float = 1.0
    page_width: float | None = None  # cm
    page_height: float | None = None
    margin_top: float = 10.0  # mm
    margin_bottom: float = 10.0
    margin_left: float = 10.0
    margin_right: float = 10.0
    print_background: bool = True
    display_header_footer: bool = False
    header_template: str | None = None
    footer_template: str | None = None
    pages: str | None = None
    css_media_type: str | None = None  # screen or print
    screen_width: int = 1280
    screen_height: int = 1024
    quality: int = 90  # jpg


@dataclasses.dataclass(frozen=True)
class Captured:
    requests: int
    refused: list[dict[str, str]]
    refusals: int

    def describe(self) -> dict[str, Any]:
        return {"requests": self.requests, "refused_count": self.refusals, "refused": self.refused}


async def capture(
    chromium: Chromium, settings: Settings, dest: Path, html: bytes | None, max_pixels: int
) -> Captured:
    """Capture `settings.url`, or the HTML document `html`, into `dest`."""
    from playwright.async_api import Error

    url = LOCAL_URL if html is not None else settings.url
    assert url is not None
    gate = Gate(chromium.policy, chromium.max_bytes, html=html, headers=settings.headers, url=url)
    try:
        async with chromium.tab() as tab, asyncio.timeout(chromium.timeout):
            tab.routing.gate = gate
            page = tab.page
            gate.main_frame = page.main_frame
            await page.set_viewport_size(
                {"width": settings.screen_width, "height": settings.screen_height}
            )
            if settings.css_media_type:
                await page.emulate_media(media=settings.css_media_type)  # type: ignore[arg-type]
            await _load(page, url, settings, gate)
            gate.stage = "printing it"
            try:
                data = await _render(page, settings, min(max_pixels, MAX_SHOT_PIXELS), html)
            except Error as exc:
                problem = _first_line(str(exc))
                if "exceeds page count" in problem:
                    problem = f"pages {settings.pages} asks for pages the page does not print to"
                raise CaptureFailed(f"The page could not be rendered: {problem}") from None
    except TimeoutError:
        raise CaptureFailed(
            f"The page was not captured within the {chromium.timeout:.0f} s limit "
            f"(it was {gate.stage})"
        ) from None
    finally:
        await gate.close()
    if len(data) > chromium.max_bytes:
        raise CaptureFailed(f"The capture is larger than {chromium.max_bytes:,} bytes")
    await asyncio.to_thread(dest.write_bytes, data)
    return Captured(gate.requests, gate.refused, gate.refusals)


async def _load(page: Any, url: str, settings: Settings, gate: Gate) -> None:
    from playwright.async_api import Error

    gate.loading = True
    try:
        while True:
            try:
                wait = WAIT_STATES[settings.wait_until]
                response = await page.goto(url, wait_until=wait, timeout=0)
            except Error as exc:
                reason = gate.reasons.get(url) or _first_line(str(exc))
                raise CaptureFailed(f"The page {url[:200]} could not be loaded: {reason}") from None
            if gate.moved_to is None:
                break
            url, gate.moved_to = gate.moved_to, None  # redirected: go where it went
    finally:
        gate.loading = False
    if response is not None and response.status >= 400:
        raise CaptureFailed(f"The page {url[:200]} answered {response.status}")
    if settings.wait_for_element:
        try:
            gate.stage = f"waiting for the element {settings.wait_for_element!r}"
            await page.wait_for_selector(settings.wait_for_element, state="attached", timeout=0)
        except Error as exc:
            raise CaptureFailed(
                f"wait_for_element {settings.wait_for_element!r}: {_first_line(str(exc))}"
            ) from None
    if settings.wait_time:
        gate.stage = f"waiting the wait_time of {settings.wait_time} ms"
        await asyncio.sleep(settings.wait_time / 1000)


async def _render(page: Any, settings: Settings, max_pixels: int, html: bytes | None) -> bytes:
    if settings.output_format == "pdf":
        options: dict[str, Any] = {
            "print_background": settings.print_background,
            "scale": settings.zoom,
            "margin": {
                "top": f"{settings.margin_top}mm",
                "bottom": f"{settings.margin_bottom}mm",
                "left": f"{settings.margin_left}mm",
                "right": f"{settings.margin_right}mm",
            },
            "display_header_footer": settings.display_header_footer,
        }
        if settings.page_width:
            options["width"] = f"{settings.page_width}cm"
        if settings.page_height:
            options["height"] = f"{settings.page_height}cm"
        if not settings.page_width and not settings.page_height:
            options["format"] = "A4"
        header, footer = settings.header_template, settings.footer_template
        if html is not None and settings.display_header_footer:
            header = LOCAL_HEADER if header is None else header
            footer = LOCAL_FOOTER if footer is None else footer
        if header is not None:
            options["header_template"] = header
        if footer is not None:
            options["footer_template"] = footer
        if settings.pages:
            options["page_ranges"] = settings.pages
        return bytes(await page.pdf(**options))
    height = await page.evaluate(
        "() => Math.max(document.documentElement.scrollHeight, document.body ? "
        "document.body.scrollHeight : 0)"
    )
    width = settings.screen_width
    height = max(1, min(int(height or 1), MAX_SHOT_HEIGHT, max_pixels // width))
    shot: dict[str, Any] = {
        "full_page": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height},
        "type": "png" if settings.output_format == "png" else "jpeg",
    }
    if settings.output_format == "jpg":
        shot["quality"] = settings.quality
    return bytes(await page.screenshot(**shot))


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["unknown error"])[0][:300]
