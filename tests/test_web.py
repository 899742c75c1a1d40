"""The web page at `/`, in a real browser: Debian's Chromium, headless, driven by Playwright,
against the real daemon. One browser and one daemon for the module; each test a new page.

Screenshots of each screen go to tests/artifacts/web/ (git-ignored; CI keeps them)."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright
from pypdf import PdfReader

from tests.conftest import CORPUS, ROOT, Daemon, image_bytes, tool_pids
from tests.media import ffprobe, make_audio, make_video, streams
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_drops import FAST, files, wait_for

ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
XSS_NAME = "<img src=x onerror=alert(1)>.png"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def web_key(daemon: Daemon) -> str:
    return daemon.create_key("web-page", "--plan", "pro")


def origin(d: Daemon) -> str:
    return d.base.removesuffix("/v1")


class Watched:
    """A page with what must never happen on it recorded: dialogs, errors, the key in a URL."""

    def __init__(self, page: Page, key: str) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: self.urls.append(r.url))
        self.key = key

    def check(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.errors == [], self.errors
        assert not [u for u in self.urls if self.key in u]


@pytest.fixture
def page(chromium: Any, daemon: Daemon, web_key: str) -> Iterator[Watched]:
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    watched = Watched(context.new_page(), web_key)
    watched.page.goto(origin(daemon) + "/")
    yield watched
    context.close()
    watched.check()


def sign_in(page: Page, key: str) -> None:
    page.fill("#key-input", key)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#convert")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Live updates on.")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def item(page: Page, name: str) -> Any:
    return page.locator("#files li.file").filter(has=page.locator(".name", has_text=name))


def wait_state(page: Page, li: Any, state: str, timeout: float = 120_000) -> None:
    expect(li).to_have_attribute("data-state", state, timeout=timeout)


def download(page: Page, link: Any, target: Path) -> Path:
    with page.expect_download(timeout=60_000) as info:
        link.click()
    info.value.save_as(target)
    return target


def tab_to(page: Page, element_id: str) -> None:
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"Tab never reaches #{element_id}")


def test_the_page_and_its_files_carry_a_strict_policy(daemon: Daemon) -> None:
    for path in ("/", "/ui/app.js", "/ui/app.css"):
        resp = requests.get(origin(daemon) + path, timeout=10)
        assert resp.status_code == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "connect-src 'self'" in csp and "img-src 'self' blob: data:" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert (
        "text/javascript"
        in requests.get(origin(daemon) + "/ui/app.js", timeout=10).headers["Content-Type"]
    )
    for bad in ("/ui/nothing.js", "/ui/..%2Fapi%2Fweb.py", "/ui/web.py"):
        assert requests.get(origin(daemon) + bad, timeout=10).status_code == 404, bad
    # No inline script or style in the page itself: the policy would block them.
    html = requests.get(origin(daemon) + "/", timeout=10).text
    assert "<script>" not in html and "style=" not in html and "onclick" not in html


def test_a_wrong_key_shows_the_apis_401_message(page: Watched, daemon: Daemon) -> None:
    expected = requests.get(
        f"{daemon.base}/keys/me", headers={"Authorization": "Bearer wrong"}, timeout=10
    ).json()
    # With the keyboard alone: Tab to the key's field, type, Enter.
    tab_to(page.page, "key-input")
    page.page.keyboard.type("wrong")
    page.page.keyboard.press("Enter")
    error = page.page.locator("#signin-error")
    expect(error).to_contain_text(expected["message"])
    expect(error).to_contain_text(expected["hint"])
    assert page.page.evaluate("localStorage.getItem('convertd.key')") is None
    shot(page.page, "signin-wrong-key")
    page.errors.clear()  # the browser logs the 401 itself


def test_convert_a_png_a_docx_and_an_mp3_and_download_them(
    page: Watched, daemon: Daemon, web_key: str, tmp_path: Path
) -> None:
    p = page.page
    sign_in(p, web_key)
    assert p.evaluate("localStorage.getItem('convertd.key')") == web_key
    # The key's plan and use, from /v1/keys/me.
    expect(p.locator("#usage")).to_contain_text("web-page · pro ·")
    used_at_start = p.locator("#usage").inner_text()
    picture = tmp_path / "photo.png"
    picture.write_bytes(image_bytes("PNG", (300, 200)))
    sound = make_audio(tmp_path / "tone.mp3", 2.0)
    document = tmp_path / "letter.docx"
    document.write_bytes((CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes())
    p.set_input_files("#file-input", [str(picture), str(document), str(sound)])

    png, docx, mp3 = item(p, "photo.png"), item(p, "letter.docx"), item(p, "tone.mp3")
    # Presets come first in the choice, then the formats this server has for the type.
    labels = png.locator("select optgroup").evaluate_all("gs => gs.map(g => g.label)")
    assert labels == ["Presets", "Formats", "Operations"]
    png.get_by_label("Convert to").select_option(label="jpg")
    png.locator("summary").click()
    png.get_by_label("width", exact=True).fill("150")
    assert png.get_by_label("quality").get_attribute("max") == "100"
    docx.get_by_label("Convert to").select_option(label="pdf")
    docx.locator("summary").click()
    docx.get_by_label("pages").fill("1")
    mp3.get_by_label("Convert to").select_option(label="wav")
    mp3.locator("summary").click()
    mp3.get_by_label("channels").fill("1")
    mp3.get_by_label("normalize").check()
    shot(p, "convert-choose")
    p.fill("#tag-input", "web-test")
    p.click("#convert-all")

    for li in (png, docx, mp3):
        wait_state(p, li, "finished")
    # Previews: the JPEG itself, and the PDF's first page as a thumbnail, both loaded.
    for li in (png, docx):
        preview = li.locator("img.preview").first
        expect(preview).to_be_visible()
        preview.evaluate("img => img.decode()")
        assert preview.evaluate("img => img.naturalWidth") > 0
    # The calls the jobs made show in the use (asked at most every 10 s).
    expect(p.locator("#usage")).not_to_have_text(used_at_start, timeout=20_000)
    shot(p, "convert-finished")

    out = download(p, png.locator("a.download"), tmp_path / "out.jpg")
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (150, 100)
    out = download(p, docx.locator("a.download"), tmp_path / "out.pdf")
    assert len(PdfReader(out).pages) == 1
    out = download(p, mp3.locator("a.download"), tmp_path / "out.wav")
    info = ffprobe(out.read_bytes(), tmp_path)
    assert info["format"]["format_name"] == "wav"
    assert streams(info, "audio")[0]["channels"] == 1

    # Download all: one ZIP with the three results.
    zipped = download(p, p.locator("#download-all"), tmp_path / "all.zip")
    with zipfile.ZipFile(zipped) as z:
        assert sorted(z.namelist()) == ["letter.pdf", "photo.jpg", "tone.wav"]

    # The history has them, filtered by their tag; delete one there, and it is gone.
    p.click("#show-history")
    p.fill("#filter-tag", "web-test")
    p.click("#history-filter button[type=submit]")
    rows = p.locator("#history-list li.file")
    expect(rows).to_have_count(3)
    expect(p.locator("#page-info")).to_contain_text("of 3")
    shot(p, "history")
    job_ids = requests.get(
        f"{origin(daemon)}/v2/jobs",
        params={"filter[tag]": "web-test"},
        headers={"Authorization": f"Bearer {web_key}"},
        timeout=10,
    ).json()["data"]
    rows.first.get_by_role("button", name="Delete").click()
    expect(rows).to_have_count(2)
    gone = requests.get(
        f"{origin(daemon)}/v2/jobs/{job_ids[0]['id']}",
        headers={"Authorization": f"Bearer {web_key}"},
        timeout=10,
    )
    assert gone.status_code == 404

    # Forget the key: it leaves the browser, and the page asks for one again.
    p.click("#forget")
    expect(p.locator("#signin")).to_be_visible()
    assert p.evaluate("localStorage.getItem('convertd.key')") is None


def test_a_hostile_file_name_is_shown_as_text_and_a_failure_as_the_api_says(
    page: Watched, daemon: Daemon, web_key: str, tmp_path: Path
) -> None:
    p = page.page
    sign_in(p, web_key)
    # A synthetic drop on the page, of a real PNG with a name that is markup.
    p.evaluate(
        """([name, bytes]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
            dt.items.add(new File([new Uint8Array([1, 2, 3, 4])], "broken.png", {type: "image/png"}));
            document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        [XSS_NAME, list(image_bytes("PNG", (40, 30)))],
    )
    hostile, broken = item(p, "onerror"), item(p, "broken.png")
    expect(hostile.locator(".name")).to_have_text(XSS_NAME)
    assert p.locator("#files img:not(.preview)").count() == 0
    hostile.get_by_label("Convert to").select_option(label="webp")
    broken.get_by_label("Convert to").select_option(label="jpg")
    p.click("#convert-all")
    wait_state(p, hostile, "finished")
    wait_state(p, broken, "failed")
    expect(hostile.locator(".name")).to_have_text(XSS_NAME)
    assert p.locator("img[src='x']").count() == 0
    # The converter's message and code, as the API has them.
    job = requests.get(
        f"{origin(daemon)}/v2/jobs/{broken.get_attribute('data-job')}",
        headers={"Authorization": f"Bearer {web_key}"},
        timeout=10,
    ).json()["data"]
    failed = next(t for t in job["tasks"] if t["operation"] == "convert")
    assert failed["status"] == "error" and failed["message"]
    lines = broken.locator(".error p").all_inner_texts()
    assert lines == [failed["message"], f"({failed['code']})"]
    text = broken.locator(".error").inner_text()
    # Retry runs the conversion again (and it fails again, the same way).
    broken.get_by_role("button", name="Retry").click()
    expect(broken).not_to_have_attribute("data-convert", failed["id"])
    wait_state(p, broken, "failed")
    assert broken.locator(".error").inner_text() == text
    retried = requests.get(
        f"{origin(daemon)}/v2/tasks/{broken.get_attribute('data-convert')}",
        headers={"Authorization": f"Bearer {web_key}"},
        timeout=10,
    ).json()["data"]
    assert retried["retry_of_task_id"] == failed["id"] and retried["status"] == "error"
    shot(p, "convert-failed-and-hostile-name")
    assert page.dialogs == []


def test_operations_merge_to_one_pdf_and_watermark(
    page: Watched, web_key: str, tmp_path: Path
) -> None:
    p = page.page
    sign_in(p, web_key)
    p.set_input_files(
        "#file-input",
        [
            {
                "name": "page1.png",
                "mimeType": "image/png",
                "buffer": image_bytes("PNG", (200, 280)),
            },
            {
                "name": "page2.jpg",
                "mimeType": "image/jpeg",
                "buffer": image_bytes("JPEG", (280, 200)),
            },
            {"name": "mark.png", "mimeType": "image/png", "buffer": image_bytes("PNG", (320, 240))},
        ],
    )
    first, second, mark = item(p, "page1.png"), item(p, "page2.jpg"), item(p, "mark.png")
    # "Apply to all": one file's format and options copied to the others of its type.
    first.get_by_label("Convert to").select_option(label="webp")
    first.locator("summary").click()
    first.get_by_label("quality").fill("55")
    first.get_by_role("button", name="Apply to all 3 image files").click()
    for other in (second, mark):
        assert other.get_by_label("Convert to").evaluate("s => s.value") == "image:webp"
        other.locator("summary").click()
        assert other.get_by_label("quality").input_value() == "55"
    first.get_by_label("Select for merging into one PDF").check()
    second.get_by_label("Select for merging into one PDF").check()
    p.get_by_role("button", name="Merge 2 selected into one PDF").click()
    merged = item(p, "merged.pdf")
    # A thumbnail with every parameter left alone: its output_format (required) is sent too.
    p.set_input_files(
        "#file-input",
        [
            {
                "name": "thumb.jpg",
                "mimeType": "image/jpeg",
                "buffer": image_bytes("JPEG", (640, 480)),
            }
        ],
    )
    thumb = item(p, "thumb.jpg")
    thumb.get_by_label("Convert to").select_option(label="Thumbnail")
    mark.get_by_label("Convert to").select_option(label="Watermark with text")
    mark.locator("summary").click()
    mark.get_by_label("text", exact=True).fill("DRAFT <b>")
    mark.get_by_label("opacity").fill("80")
    p.click("#convert-all")
    wait_state(p, merged, "finished")
    wait_state(p, mark, "finished")
    wait_state(p, thumb, "finished")
    shot(p, "operations")
    out = download(p, thumb.locator("a.download"), tmp_path / "thumb.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
    out = download(p, merged.locator("a.download"), tmp_path / "merged.pdf")
    assert len(PdfReader(out).pages) == 2
    # History calls a merge by its output, not by its first input.
    p.click("#show-history")
    expect(p.locator("#history-list .name", has_text="merged.pdf (2 files)")).to_have_count(1)
    p.click("#show-convert")
    out = download(p, mark.locator("a.download"), tmp_path / "mark.png")
    with Image.open(out) as im:
        assert im.size == (320, 240)
        assert (
            im.convert("RGB").tobytes()
            != Image.open(io.BytesIO(image_bytes("PNG", (320, 240)))).convert("RGB").tobytes()
        )


def test_a_refused_file_keeps_its_choices_and_can_be_sent_again(
    page: Watched, web_key: str
) -> None:
    p = page.page
    sign_in(p, web_key)
    p.set_input_files(
        "#file-input",
        [{"name": "bad.png", "mimeType": "image/png", "buffer": image_bytes("PNG", (64, 48))}],
    )
    li = item(p, "bad.png")
    li.get_by_label("Convert to").select_option(label="Watermark with text")
    li.locator("summary").click()
    li.get_by_label("text", exact=True).fill("X")
    # What the browser knows is wrong is said on the field and not sent.
    li.get_by_label("opacity").fill("-5")
    li.get_by_label("font_size").press_sequentially("4e")
    p.click("#convert-all")
    wait_state(p, li, "invalid")
    expect(li.locator(".field-error")).to_have_count(2)
    assert not [u for u in page.urls if u.endswith("/v2/jobs")]
    li.get_by_label("opacity").fill("80")
    li.get_by_label("font_size").fill("30")
    expect(li.locator(".field-error")).to_have_count(0)
    li.get_by_label("font_color").fill("no colour")
    p.click("#convert-all")
    # The API's 422 names the field: said there, the choices still open, the file removable.
    wait_state(p, li, "refused")
    expect(li.locator(".field-error")).to_contain_text("must be a colour")
    # The message once (with its hint, if any), not again as a "field: problem" line.
    lines = li.locator(".error p").all_inner_texts()
    assert len(lines) <= 2 and "font_color" in lines[0], lines
    assert not any(line.startswith("tasks.convert.font_color:") for line in lines), lines
    assert li.get_by_label("font_color").evaluate("i => i.validity.customError")
    expect(li.get_by_role("button", name="Remove")).to_be_visible()
    li.get_by_label("font_color").fill("#ff0000")
    expect(li.locator(".field-error")).to_have_count(0)
    p.click("#convert-all")
    wait_state(p, li, "finished")
    page.errors.clear()  # the browser logs the 422 itself


def use_up_this_minute(d: Daemon, key: str, at_least_left: int = 15) -> None:
    """Spend the key's calls of this minute, so its next call is refused for at least
    `at_least_left` more seconds. Windows are clock minutes: near a minute's end, wait for the
    next one and spend that, or the page's next call could land in a fresh window."""
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(200):
        resp = requests.get(f"{origin(d)}/v1/keys/me", headers=auth, timeout=10)
        if resp.status_code != 429:
            continue
        left = int(resp.headers["Retry-After"])
        if left >= at_least_left:
            return
        time.sleep(left + 0.5)
    raise AssertionError("the key was never refused")


def test_a_batch_on_a_small_plan_waits_out_its_rate_limit(page: Watched, daemon: Daemon) -> None:
    """The minute's calls are spent when the batch starts: the page is refused, shows the wait,
    waits Retry-After (15-60 s) and goes on in the next minute."""
    daemon.cli("plans", "set", "tiny", "--api", "--calls-per-minute", "12")
    tiny = daemon.create_key("web-tiny", "--plan", "tiny")
    p = page.page
    sign_in(p, tiny)
    names = [f"paced-{n}.png" for n in range(3)]
    p.set_input_files(
        "#file-input",
        [
            {"name": n, "mimeType": "image/png", "buffer": image_bytes("PNG", (32, 24))}
            for n in names
        ],
    )
    use_up_this_minute(daemon, tiny)
    asked_before = sum(u.endswith("/v1/keys/me") for u in page.urls)
    began = time.monotonic()
    p.click("#convert-all")
    status = p.locator("#files .status", has_text=re.compile(r"rate-limited: retrying in \d+ s"))
    expect(status.first).to_be_visible(timeout=10_000)
    for name in names:
        wait_state(p, item(p, name), "finished", timeout=90_000)
    # The usage line is asked at most every 10 s, not after every job change (each file makes
    # several); a request refused with 429 is made again, so allow one retry per ask.
    asked = sum(u.endswith("/v1/keys/me") for u in page.urls) - asked_before
    assert asked <= 2 * (1 + (time.monotonic() - began) // 10), asked
    page.errors.clear()  # the browser logs each 429 itself


def test_a_reload_while_rate_limited_stays_signed_in(page: Watched, daemon: Daemon) -> None:
    daemon.cli("plans", "set", "tiny", "--api", "--calls-per-minute", "8")
    tiny = daemon.create_key("web-reload", "--plan", "tiny")
    p = page.page
    sign_in(p, tiny)
    use_up_this_minute(daemon, tiny)
    p.reload()
    expect(p.locator("#signin-error")).to_contain_text(
        re.compile(r"Rate-limited, retrying in \d+ s")
    )
    expect(p.locator("#convert")).to_be_visible(timeout=90_000)
    expect(p.locator("#connection")).to_have_text("Live updates on.", timeout=30_000)
    assert p.evaluate("localStorage.getItem('convertd.key')") == tiny
    page.errors.clear()  # the browser logs each 429 itself


def test_history_filters_and_pages(page: Watched, daemon: Daemon, web_key: str) -> None:
    auth = {"Authorization": f"Bearer {web_key}"}
    for n in range(12):
        tasks = {
            "in": {"operation": "import/raw", "file": f"note {n}", "filename": f"note-{n}.txt"},
            "h": {"operation": "convert", "input": "in", "output_format": "md5"},
        }
        if n == 0:  # one that fails: an unknown format to read it as
            tasks["h"]["input_format"] = "png"
            tasks["h"]["output_format"] = "jpg"
        resp = requests.post(
            f"{origin(daemon)}/v2/jobs",
            json={"tasks": tasks, "tag": "paging"},
            headers=auth,
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        ended = requests.get(
            f"{origin(daemon)}/sync/v2/jobs/{resp.json()['data']['id']}", headers=auth, timeout=60
        ).json()["data"]
        assert ended["status"] == ("error" if n == 0 else "finished"), ended
    p = page.page
    sign_in(p, web_key)
    p.click("#show-history")
    p.fill("#filter-tag", "paging")
    p.click("#history-filter button[type=submit]")
    rows = p.locator("#history-list li.file")
    expect(p.locator("#page-info")).to_have_text("1\u201310 of 12 (page 1 of 2)")
    expect(rows).to_have_count(10)
    expect(rows.first.locator(".name")).to_have_text("note-11.txt")
    p.click("#next-page")
    expect(p.locator("#page-info")).to_have_text("11\u201312 of 12 (page 2 of 2)")
    expect(rows).to_have_count(2)
    expect(rows.last.locator(".name")).to_have_text("note-0.txt")
    p.select_option("#filter-status", "error")
    p.click("#history-filter button[type=submit]")
    expect(p.locator("#page-info")).to_have_text("1\u20131 of 1 (page 1 of 1)")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-state", "failed")
    expect(rows.first.get_by_role("button", name="Retry")).to_be_visible()


def test_cancel_stops_the_ffmpeg_process(
    page: Watched, daemon: Daemon, web_key: str, tmp_path: Path
) -> None:
    p = page.page
    sign_in(p, web_key)
    clip = make_video(
        tmp_path / "long.mp4", 60.0, "1280x720", "-c:v", "libx264", "-preset", "ultrafast"
    )
    p.set_input_files("#file-input", str(clip))
    li = item(p, "long.mp4")
    li.get_by_label("Convert to").select_option(label="webm")
    li.locator("summary").click()
    li.get_by_label("video_codec").select_option("vp9")
    li.get_by_label("crf").fill("4")
    p.click("#convert-all")
    wait_state(p, li, "processing")
    deadline = time.monotonic() + 60
    while not tool_pids("ffmpeg", daemon.data_dir):
        assert time.monotonic() < deadline, "ffmpeg never started"
        time.sleep(0.05)
    expect(li.locator("progress")).to_be_visible()
    # FFmpeg's progress, as task.updated events bring it.
    expect(li.locator(".status")).to_have_text(re.compile(r"processing \d+%"), timeout=60_000)
    shot(p, "convert-processing")
    li.get_by_role("button", name="Cancel").click()
    wait_state(p, li, "cancelled", timeout=30_000)
    deadline = time.monotonic() + 10
    while tool_pids("ffmpeg", daemon.data_dir):
        assert time.monotonic() < deadline, "ffmpeg still runs after the cancel"
        time.sleep(0.05)


def test_phone_width_and_dark_mode(chromium: Any, daemon: Daemon, web_key: str) -> None:
    context = chromium.new_context(
        viewport={"width": 375, "height": 740}, color_scheme="dark", is_mobile=True
    )
    try:
        p = context.new_page()
        p.goto(origin(daemon) + "/")
        shot(p, "phone-signin")
        sign_in(p, web_key)
        # The file picker is reached with Tab, and its label shows the focus.
        tab_to(p, "file-input")
        outline = p.evaluate(
            "getComputedStyle(document.querySelector('label[for=file-input]')).outlineStyle"
        )
        assert outline == "solid", outline
        p.set_input_files(
            "#file-input",
            [
                {
                    "name": "a-very-long-file-name-without-any-spaces-at-all-x.png",
                    "mimeType": "image/png",
                    "buffer": image_bytes("PNG"),
                },
                {
                    "name": "song.mp3",
                    "mimeType": "audio/mpeg",
                    "buffer": (CORPUS / "audio" / "speech-mono.mp3").read_bytes(),
                },
            ],
        )
        p.locator("#files summary").first.click()
        fits = "document.documentElement.scrollWidth <= window.innerWidth"
        assert p.evaluate(fits), p.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        background = p.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(17, 20, 24)", background
        shot(p, "phone-convert-dark")
        p.click("#show-history")
        expect(p.locator("#page-info")).not_to_be_empty()
        assert p.evaluate(fits)
        # The keyboard alone reaches the controls, and every one has a label.
        unlabelled = p.evaluate(
            """() => [...document.querySelectorAll('input, select')]
                .filter(e => !e.labels || e.labels.length === 0).map(e => e.id)"""
        )
        assert unlabelled == []
    finally:
        context.close()


def test_folders_at_a_glance_for_an_admin_key_only(
    chromium: Any, make_daemon: Any, tmp_path: Path
) -> None:
    # A daemon of its own, with quick drop folders: what the page lists is what the folders did.
    d = make_daemon(env=FAST, workers=1)
    admin = d.create_key("folders-admin", "--admin")
    plain = d.create_key("folders-plain")
    root = d.data_dir / "drop"
    inbox = root / "inbox" / "webp"
    inbox.mkdir(parents=True)
    png = image_bytes("PNG", (64, 48))
    (inbox / "holiday.png").write_bytes(png)
    (inbox / XSS_NAME).write_bytes(png[:60])  # a real PNG cut short, named as markup
    (root / "inbox" / "loose.png").write_bytes(png)  # skipped: not in inbox/<format>/
    wait_for(lambda: files(root / "outbox") == ["holiday.webp"], what="the converted drop")
    with Image.open(root / "outbox" / "holiday.webp") as im:
        assert im.format == "WEBP" and im.size == (64, 48)
    wait_for(lambda: f"{XSS_NAME}.error.json" in files(root / "failed" / "webp"), what="failure")
    url = f"{origin(d)}/v2/drops"
    failed = wait_for(
        lambda: requests.get(
            url, params={"filter[status]": "failed"}, headers={"X-API-Key": admin}, timeout=10
        ).json()["data"],
        what="the failure on record",
    )[0]
    assert failed["message"]
    assert requests.get(url, headers={"X-API-Key": plain}, timeout=10).status_code == 403

    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    try:
        watched = Watched(context.new_page(), admin)
        p = watched.page
        p.goto(origin(d) + "/")
        sign_in(p, admin)
        folders = p.locator("#folders")
        expect(folders).to_be_visible()
        counts = folders.locator(".counts li")
        expect(counts).to_have_text(
            ["0 waiting", "1 skipped", "0 processing", "1 recently converted", "1 failed"]
        )
        converted = folders.locator("li.drop[data-status=finished]")
        expect(converted).to_have_count(1)
        expect(converted.locator(".head .name")).to_have_text("inbox/webp/holiday.png")
        expect(converted.locator(".output")).to_have_text("→ outbox/holiday.webp")
        expect(converted.locator(".when")).to_contain_text("converted")
        bad = folders.locator("li.drop[data-status=failed]")
        expect(bad.locator(".head .name")).to_have_text(f"inbox/webp/{XSS_NAME}")
        expect(bad.locator(".error .message")).to_have_text(failed["message"])
        expect(bad.locator(".when")).to_contain_text(f"job {failed['job_id']}")
        assert p.locator("#folders img").count() == 0
        skipped = folders.locator("li.drop[data-status=skipped]")
        expect(skipped.locator(".message")).to_contain_text("inbox/<format>/")
        shot(p, "folders")

        # Live: a new drop shows without a click (the view is asked again every 10 s).
        (inbox / "second.png").write_bytes(png)
        expect(converted).to_have_count(2, timeout=60_000)
        expect(converted.first.locator(".head .name")).to_have_text("inbox/webp/second.png")
        # The keyboard reaches Refresh, and keeps its place when the view is drawn again.
        tab_to(p, "folders-refresh")
        asked = len([u for u in watched.urls if "/v2/drops" in u])
        p.keyboard.press("Enter")
        expect(p.locator("#folders-updated")).not_to_be_empty()
        wait_for(lambda: len([u for u in watched.urls if "/v2/drops" in u]) > asked, what="asked")
        assert p.evaluate("document.activeElement.id") == "folders-refresh"
        # A summary opens and closes its group from the keyboard.
        summary = folders.locator("details[data-status=finished] summary")
        summary.focus()
        p.keyboard.press("Enter")
        expect(converted.first).to_be_hidden()
        p.keyboard.press("Enter")
        expect(converted.first).to_be_visible()

        # At phone width nothing scrolls sideways.
        p.set_viewport_size({"width": 375, "height": 740})
        fits = "document.documentElement.scrollWidth <= window.innerWidth"
        assert p.evaluate(fits), p.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        shot(p, "phone-folders")

        # A key that is not an admin's never sees the section, and the page never asks.
        p.click("#forget")
        expect(folders).to_be_hidden()
        watched.urls.clear()
        watched.key = plain
        sign_in(p, plain)
        expect(p.locator("#usage")).to_contain_text("folders-plain")
        expect(folders).to_be_hidden()
        assert not [u for u in watched.urls if "/v2/drops" in u]
        watched.check()
    finally:
        context.close()


def test_option_defaults_are_shown_and_only_changes_are_sent(
    page: Watched, daemon: Daemon, web_key: str
) -> None:
    p = page.page
    sign_in(p, web_key)
    pdf = (CORPUS / "pdf" / "google-docs-export.pdf").read_bytes()
    p.set_input_files(
        "#file-input",
        [
            {"name": "defaults.png", "mimeType": "image/png", "buffer": image_bytes("PNG")},
            {"name": "defaults.pdf", "mimeType": "application/pdf", "buffer": pdf},
        ],
    )
    picture, document = item(p, "defaults.png"), item(p, "defaults.pdf")
    picture.get_by_label("Convert to").select_option(label="jpg")
    picture.locator("summary").click()
    # A choice with a default shows it chosen; a number with one shows it as its placeholder;
    # where the output format decides (jpg quality 85, webp 80), none is claimed.
    fit = picture.get_by_label("fit")
    assert fit.evaluate("s => s.value") == "contain"
    assert fit.evaluate("s => s.selectedOptions[0].textContent") == "contain (default)"
    assert picture.get_by_label("background").get_attribute("placeholder") == "#ffffff (default)"
    assert picture.get_by_label("quality").get_attribute("placeholder") == "default"
    assert not picture.get_by_label("strip_metadata").is_checked()
    picture.get_by_label("width", exact=True).fill("20")
    document.get_by_label("Convert to").select_option(label="png")
    document.locator("summary").click()
    assert document.get_by_label("dpi").get_attribute("placeholder") == "150 (default)"
    shot(p, "convert-defaults")
    p.fill("#tag-input", "defaults")
    p.click("#convert-all")
    wait_state(p, picture, "finished")
    wait_state(p, document, "finished")
    # Only what was changed went to the server: the defaults shown were not sent.
    for li, sent in ((picture, {"width": 20}), (document, {})):
        task = requests.get(
            f"{origin(daemon)}/v2/tasks/{li.get_attribute('data-convert')}",
            headers={"Authorization": f"Bearer {web_key}"},
            timeout=10,
        ).json()["data"]
        options = {
            k: v
            for k, v in task["payload"].items()
            if k not in ("operation", "input", "input_format", "output_format")
        }
        assert options == sent, task["payload"]
