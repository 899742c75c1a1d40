"""The seed document's JavaScript examples, unchanged but for the base URL and key, run in a
real browser: Debian's Chromium, headless, driven by Playwright, from a page on another origin
(localhost vs 127.0.0.1) with a key restricted to that page's domain."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from tests.conftest import Daemon, image_bytes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's notes have it: no background traffic to Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Copied verbatim from seeds/v1-api-skyconvert.txt, "Upload a File", JavaScript tab.
SEED_UPLOAD = """const form = new FormData();
form.append("file", fileInput.files[0]);
const resp = await fetch("https://api.skyconvert.net/v1/upload", {
method: "POST",
headers: { "X-API-Key": "YOUR_API_KEY" },
body: form,
});
const { files } = await resp.json();
const filePath = files[0].file_path;"""

# Copied verbatim from seeds/v1-api-skyconvert.txt, "Convert a File", JavaScript tab.
SEED_CONVERT = """const API_KEY = "YOUR_API_KEY";
const BASE = "https://api.skyconvert.net/v1";
// 1. Start conversion
const form = new FormData();
form.append("file", fileInput.files[0]);
form.append("filetype", "image");
form.append("output_format", "webp");
const { job_id } = await fetch(`${BASE}/convert`, {
method: "POST",
headers: { "X-API-Key": API_KEY },
body: form,
}).then(r => r.json());
// 2. Poll until done
let status;
do {
await new Promise(r => setTimeout(r, 2000));
status = await fetch(`${BASE}/status/${job_id}`,
{ headers: { "X-API-Key": API_KEY } }).then(r => r.json());
} while (status.status === "pending" || status.status === "processing");
// 3. Download result
if (status.status === "finished") {
window.location.href = status.download_url;
}"""

# A page of the user's own: a file input, and each example as the body of a function that a
# button runs (the examples use `await` at their top level, as in a module or a console).
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>seed examples</title></head>
<body>
<input type="file" id="fileInput">
<button id="upload">Upload</button> <button id="convert">Convert</button>
<pre id="out"></pre>
<script>
const out = document.getElementById("out");
async function uploadExample() {
UPLOAD
return filePath;
}
async function convertExample() {
CONVERT
return status;
}
document.getElementById("upload").onclick = () => uploadExample().then(
  p => { out.textContent = "uploaded " + p; }, e => { out.textContent = "error " + e; });
document.getElementById("convert").onclick = () => convertExample().then(
  s => { out.textContent = "converted " + s.status; }, e => { out.textContent = "error " + e; });
</script>
</body></html>"""


def seed_page(base: str, key: str) -> str:
    def edit(js: str) -> str:
        return js.replace("https://api.skyconvert.net/v1", base).replace("YOUR_API_KEY", key)

    return PAGE.replace("UPLOAD", edit(SEED_UPLOAD)).replace("CONVERT", edit(SEED_CONVERT))


class PageServer:
    """Serves one page on localhost: another origin than the API's 127.0.0.1."""

    def __init__(self, html: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/app.html"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def test_the_seeds_javascript_runs_in_chromium(
    daemon: Daemon, browser: Any, tmp_path: Path
) -> None:
    key = daemon.create_key(
        "browser", "--plan", "pro", "--restrict", "domain", "--allow", "localhost"
    )
    picture = tmp_path / "input.png"
    picture.write_bytes(image_bytes("PNG", (96, 64), "RGBA"))
    server = PageServer(seed_page(daemon.base, key))
    try:
        page = browser.new_page(accept_downloads=True)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url)
        page.set_input_files("#fileInput", str(picture))

        page.click("#upload")
        page.wait_for_function("document.getElementById('out').textContent !== ''")
        uploaded = page.text_content("#out")
        assert uploaded is not None and uploaded.startswith("uploaded "), (uploaded, errors)
        assert uploaded.endswith("/input.png")

        with page.expect_download(timeout=60_000) as download_info:
            page.click("#convert")
        download = download_info.value
        saved = tmp_path / "from-browser.webp"
        download.save_as(saved)
        assert download.suggested_filename.endswith(".webp")
        with Image.open(saved) as im:
            assert im.format == "WEBP" and im.size == (96, 64)
        assert not errors, errors
    finally:
        server.close()


def test_a_page_on_a_domain_the_key_does_not_allow_is_refused(
    daemon: Daemon, browser: Any, tmp_path: Path
) -> None:
    key = daemon.create_key("elsewhere", "--restrict", "domain", "--allow", "example.com")
    picture = tmp_path / "input.png"
    picture.write_bytes(image_bytes("PNG"))
    server = PageServer(seed_page(daemon.base, key))
    try:
        page = browser.new_page()
        page.goto(server.url)
        page.set_input_files("#fileInput", str(picture))
        page.click("#upload")
        page.wait_for_function("document.getElementById('out').textContent !== ''")
        # The page can read the refusal (CORS headers are on errors too), so the example's
        # `files[0]` fails on the error body rather than with "Failed to fetch".
        text = page.text_content("#out") or ""
        assert text.startswith("error ") and "Failed to fetch" not in text, text
        answer = page.evaluate(
            """async (base) => {
                const r = await fetch(base + "/formats", {headers: {"X-API-Key": KEY}});
                return [r.status, (await r.json()).message];
            }""".replace("KEY", repr(key)),
            daemon.base,
        )
        assert answer[0] == 403 and "localhost" in answer[1], answer
    finally:
        server.close()
