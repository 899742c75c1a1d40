"""capture-website (/v2) and HTML -> PDF with engine "chromium" (v1), in the warm Chromium, with
what comes out opened (pdftotext, pypdf's links, Pillow's pixels) and the network policy held
for every request the page makes: a canary on a loopback address the daemon was not allowed to
reach must hear nothing, however the page asks."""

from __future__ import annotations

import io
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pypdf
import pytest
import requests
from PIL import Image

from tests.conftest import CORPUS, Daemon
from tests.test_v2_api import call, job_of, named, wait_job
from tests.test_v2_operations import b64, exported, page_sizes


class Site:
    """A web site on 127.0.0.1 (which the v2 daemon may reach) and a canary on 127.0.0.2
    (which it may not); both record the paths asked of them."""

    def __init__(self, host: str, pages: dict[str, tuple[int, str, bytes]]) -> None:
        self.hits: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.pages = pages
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.path)
                site.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, kind, body = pages.get(self.path, (404, "text/plain", b"missing"))
                self.send_response(status)
                if self.path == "/cookie.html":
                    self.send_header("Set-Cookie", "sid=SERVER-SECRET; Path=/")
                if status in (301, 302):
                    self.send_header("Location", body.decode())
                    body = b""
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class UdpCanary:
    """A UDP socket that records every datagram (WebRTC's STUN goes over UDP)."""

    def __init__(self, host: str) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]

    def heard(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.sock.recv(2048))
            except OSError:
                return got


def png_of(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Site, Site]]:
    canary = Site("127.0.0.2", {})
    pages: dict[str, tuple[int, str, bytes]] = {}
    site = Site("127.0.0.1", pages)
    hostile = f"""<!doctype html><html><head><title>Report</title>
<link rel="stylesheet" href="{canary.base}/style.css"></head>
<body style="margin:0">
<h1>Quarterly capture report</h1>
<p>See <a href="https://example.org/details">the details page</a>.</p>
<img src="/red.png" width="40" height="40">
<img src="{canary.base}/pixel.png">
<img src="file:///etc/passwd"><iframe src="file:///etc/passwd"></iframe>
<img src="/to-canary">
<script>
fetch("{canary.base}/fetched").catch(() => 0);
try {{ new WebSocket("ws://127.0.0.2:{canary.server.server_address[1]}/ws"); }} catch (e) {{}}
</script>
</body></html>"""
    pages.update(
        {
            "/page.html": (200, "text/html", hostile.encode()),
            "/red.png": (200, "image/png", png_of((255, 0, 0))),
            "/to-canary": (302, "text/plain", f"{canary.base}/redirected.png".encode()),
            "/block.html": (
                200,
                "text/html",
                b'<body style="margin:0;background:#fff">'
                b'<div style="width:200px;height:3000px;background:#0000ff"></div></body>',
            ),
            "/gone.html": (404, "text/html", b"<h1>Not here</h1>"),
            "/slow.html": (
                200,
                "text/html",
                b"<p>never ready</p>",
            ),
        }
    )
    yield site, canary
    site.close()
    canary.close()


def captured(d: Daemon, k: str, **params: Any) -> dict[str, Any]:
    job = job_of(
        d,
        k,
        {
            "op": {"operation": "capture-website", **params},
            "out": {"operation": "export/url", "input": "op"},
        },
    )
    return wait_job(d, k, job["id"])


def pdftotext(data: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode()


def test_a_url_becomes_a_pdf_with_its_text_and_links_and_nothing_private_is_reached(
    v2_daemon: Daemon, v2_key: str, sites: tuple[Site, Site]
) -> None:
    site, canary = sites
    job = captured(v2_daemon, v2_key, url=f"{site.base}/page.html", output_format="pdf")
    assert job["status"] == "finished", job
    pdf = exported(job)
    text = pdftotext(pdf)
    assert "Quarterly capture report" in text
    assert "root:" not in text  # /etc/passwd stayed out of reach
    links = [
        a.get_object()["/A"]["/URI"]
        for page in pypdf.PdfReader(io.BytesIO(pdf)).pages
        for a in page.get("/Annots", [])
        if "/A" in a.get_object()
    ]
    assert "https://example.org/details" in links
    assert "/red.png" in site.hits  # the page's own resources were fetched
    assert canary.hits == []  # ... and nothing on the address it may not reach
    refused = named(job, "op")["result"]["capture"]
    reasons = " ".join(r["reason"] for r in refused["refused"])
    urls = " ".join(f"{r['url']} {r['reason']}" for r in refused["refused"])
    assert refused["refused_count"] >= 5
    assert "import_url_allow" in reasons
    assert f"{canary.base}/pixel.png" in urls and f"{canary.base}/redirected.png" in urls


def test_a_url_becomes_a_png_of_the_whole_page(
    v2_daemon: Daemon, v2_key: str, sites: tuple[Site, Site]
) -> None:
    site, _ = sites
    job = captured(
        v2_daemon,
        v2_key,
        url=f"{site.base}/block.html",
        output_format="png",
        screen_width=800,
        screen_height=600,
        filename="shot.png",
    )
    assert job["status"] == "finished", job
    assert named(job, "out")["result"]["files"][0]["filename"] == "shot.png"
    with Image.open(io.BytesIO(exported(job))) as im:
        assert im.format == "PNG"
        assert im.size == (800, 3000)  # the full page, not the viewport
        rgb = im.convert("RGB")
        assert rgb.getpixel((100, 2900)) == (0, 0, 255)
        assert rgb.getpixel((600, 100)) == (255, 255, 255)


def test_an_html_file_becomes_a_pdf_with_its_page_size_margins_and_footer(
    v2_daemon: Daemon, v2_key: str, sites: tuple[Site, Site]
) -> None:
    _, canary = sites
    html = (
        "<html><body><h2>Invoice 2026-041</h2>"
        f'<img src="{canary.base}/from-file.png"><img src="logo.png">'
        '<iframe src="file:///etc/hostname"></iframe></body></html>'
    ).encode()
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "in": b64("invoice.html", html),
            "op": {
                "operation": "capture-website",
                "input": "in",
                "page_width": 10,
                "page_height": 15,
                "margin_top": 20,
                "margin_bottom": 20,
                "display_header_footer": True,
                "header_template": "<span></span>",
                "footer_template": '<span style="font-size:10px">Page <span class="pageNumber">'
                "</span> of <span class=totalPages></span></span>",
            },
            "out": {"operation": "export/url", "input": "op"},
        },
    )
    job = wait_job(v2_daemon, v2_key, job["id"])
    assert job["status"] == "finished", job
    assert named(job, "out")["result"]["files"][0]["filename"] == "invoice.pdf"
    pdf = exported(job)
    [(width, height)] = page_sizes(pdf)  # 10 x 15 cm is 283.5 x 425.2 points
    assert abs(width - 283.5) < 2 and abs(height - 425.2) < 2, (width, height)
    text = pdftotext(pdf)
    assert "Invoice 2026-041" in text and "Page 1 of 1" in text
    assert canary.hits == []
    refusals = named(job, "op")["result"]["capture"]["refused"]
    assert any(r["url"].endswith("/logo.png") for r in refusals)


def test_bad_capture_parameters_are_422_naming_the_field(v2_daemon: Daemon, v2_key: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "http://x.test/", "output_format": "docx"}, "output_format"),
        ({"url": "http://x.test/", "zoom": 9}, "zoom"),
        ({"url": "http://x.test/", "wait_until": "forever"}, "wait_until"),
        ({"url": "http://x.test/", "wait_time": 10**9}, "wait_time"),
        ({"url": "http://x.test/", "headers": {"X": "a\r\nb"}}, "headers"),
        ({"url": "http://x.test/", "print_background": "yes"}, "print_background"),
        ({"url": "http://x.test/", "script": "alert(1)"}, "script"),
    ]
    for params, field in cases:
        resp = call(v2_daemon, v2_key, "POST", "/v2/capture-website", json=params)
        assert resp.status_code == 422, (params, resp.text)
        assert field in resp.json()["errors"], (params, resp.json())


def test_pages_that_fail_say_why(v2_daemon: Daemon, v2_key: str, sites: tuple[Site, Site]) -> None:
    site, canary = sites
    gone = captured(v2_daemon, v2_key, url=f"{site.base}/gone.html")
    assert gone["status"] == "error"
    assert "answered 404" in named(gone, "op")["message"]
    private = captured(v2_daemon, v2_key, url=f"{canary.base}/page.html")
    assert private["status"] == "error"
    assert "import_url_allow" in named(private, "op")["message"]
    assert canary.hits == []


HOG = (
    b"<body><p id=done>start</p><script>let kept = [];"
    b"try { for (let i = 0; i < 300; i++) kept.push(new Uint8Array(10 << 20).fill(1)); }"
    b"catch (e) {} document.getElementById('done').textContent = 'held ' + kept.length;"
    b"</script></body>"
)


def test_a_capture_is_bounded_in_time_and_memory(
    make_daemon: Any, sites: tuple[Site, Site]
) -> None:
    site, _ = sites
    d = make_daemon(
        {
            "CONVERTD_IMPORT_URL_ALLOW": "127.0.0.1/32",
            "CONVERTD_CAPTURE_TIMEOUT_SECONDS": "5",
            "CONVERTD_CAPTURE_MEMORY_MB": "512",
            "CONVERTD_MAX_UPLOAD_BYTES": "5000000",
        }
    )
    k = d.create_key("capture-limits")
    never = captured(d, k, url=f"{site.base}/slow.html", wait_for_element="#never")
    assert never["status"] == "error", never
    assert "within the 5 s limit" in named(never, "op")["message"]
    assert "#never" in named(never, "op")["message"]
    # 3 GB of arrays in a 512 MB browser: the page's script fails, not the daemon or the browser.
    hog = job_of(
        d,
        k,
        {
            "in": b64("hog.html", HOG),
            "op": {"operation": "capture-website", "input": "in"},
            "out": {"operation": "export/url", "input": "op"},
        },
    )
    hog = wait_job(d, k, hog["id"])
    if hog["status"] == "finished":
        assert "held 300" not in pdftotext(exported(hog))
    after = captured(d, k, url=f"{site.base}/block.html", output_format="png")
    assert after["status"] == "finished", after
    # Ten 2 MB downloads at once in a 5 MB budget: counted as the bytes arrive, not after.
    for n in range(10):
        site.pages[f"/blob?{n}"] = (200, "application/octet-stream", b"x" * 2_000_000)
    fetches = "".join(f'fetch("/blob?{n}").catch(() => 0);' for n in range(10))
    site.pages["/many.html"] = (200, "text/html", f"<p>many</p><script>{fetches}</script>".encode())
    many = captured(d, k, url=f"{site.base}/many.html", wait_until="networkidle0")
    assert many["status"] == "finished", many
    result = named(many, "op")["result"]["capture"]
    assert any(
        "more than 5,000,000 bytes downloaded in all" in r["reason"] for r in result["refused"]
    ), result


def test_html_to_pdf_in_chromium_through_v1(daemon: Daemon, key: str) -> None:
    formats = requests.get(f"{daemon.base}/formats", headers={"X-API-Key": key}, timeout=10).json()
    assert formats["filetypes"]["document"]["options"]["engine"]["choices"] == [
        "libreoffice",
        "chromium",
    ]
    html = b"<style>h1{color:#c00}</style><h1>Printed by a browser</h1><p>flex &amp; grid</p>"
    status, out = daemon.convert_and_fetch(
        key, html, "page.html", "document", "pdf", {"engine": "chromium"}
    )
    assert out is not None, status
    assert "Printed by a browser" in pdftotext(out.content)
    refused = daemon.convert(key, b"x", "a.docx", "document", "odt", {"engine": "chromium"})
    assert refused.status_code == 400 and "engine" in refused.json()["message"]
    docx = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
    not_html = daemon.convert(key, docx, "a.docx", "document", "pdf", {"engine": "chromium"})
    assert not_html.status_code == 400 and "reads html" in not_html.json()["message"], not_html.text


def test_without_chromium_capture_is_not_offered(make_daemon: Any) -> None:
    d = make_daemon({"CONVERTD_CHROMIUM": "/nonexistent/chromium"})
    k = d.create_key("no-browser")
    formats = requests.get(f"{d.base}/formats", headers={"X-API-Key": k}, timeout=10).json()
    assert "engine" not in formats["filetypes"]["document"]["options"]
    job = captured(d, k, url="https://example.org/")
    assert job["status"] == "error"
    assert "needs chromium" in named(job, "op")["message"]


def test_what_a_page_sends_stays_with_its_origin_and_nothing_leaves_by_udp(
    v2_daemon: Daemon, v2_key: str, sites: tuple[Site, Site]
) -> None:
    site, _ = sites
    other = Site("127.0.0.1", {"/seen.png": (200, "image/png", png_of((0, 255, 0)))})
    udp = UdpCanary("127.0.0.2")
    try:
        page = f"""<body><h1>cookies</h1><img src="/hop">
<script>
try {{
  const pc = new RTCPeerConnection({{iceServers: [{{urls: "stun:127.0.0.2:{udp.port}"}}]}});
  pc.createDataChannel("x");
  pc.createOffer().then(o => pc.setLocalDescription(o));
}} catch (e) {{}}
</script></body>"""
        site.pages["/cookie.html"] = (200, "text/html", page.encode())
        site.pages["/hop"] = (302, "text/plain", f"{other.base}/seen.png".encode())
        job = captured(
            v2_daemon,
            v2_key,
            url=f"{site.base}/cookie.html",
            headers={"Authorization": "Bearer CALLER-TOKEN"},
            wait_until="networkidle0",
        )
        assert job["status"] == "finished", job
        hop = site.headers[site.hits.index("/hop")]
        assert "sid=SERVER-SECRET" in hop.get("cookie", ""), hop  # the page's own cookie...
        assert "/seen.png" in other.hits  # ...and the redirect was followed...
        sent = other.headers[other.hits.index("/seen.png")]
        assert "cookie" not in sent and "authorization" not in sent, sent  # ...bare
        assert sent.get("referer", "").count("/") <= 3, sent  # the origin, not the page
        first = site.headers[site.hits.index("/cookie.html")]
        assert first.get("authorization") == "Bearer CALLER-TOKEN"
        assert udp.heard() == []
    finally:
        other.close()
        udp.sock.close()


def test_recycling_lets_the_captures_under_way_finish(
    sites: tuple[Site, Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser due for recycling finishes the captures it has while a fresh one takes the
    next (run in-process on the real browser, with recycling after every page)."""
    import asyncio

    from convertd.browser import chromium as chromium_module
    from convertd.browser.capture import Settings, capture
    from convertd.fetch import Policy, parse_networks

    site, _ = sites
    monkeypatch.setattr(chromium_module, "RECYCLE_AFTER", 1)

    async def run() -> list[Any]:
        browser = chromium_module.Chromium(
            tmp_path / "browser",
            Policy(parse_networks(["127.0.0.1/32"])),
            timeout=60,
            memory_mb=1024,
            max_bytes=10_000_000,
        )
        try:
            settings = Settings(url=f"{site.base}/page.html", wait_time=300)
            return await asyncio.gather(
                *(capture(browser, settings, tmp_path / f"{n}.pdf", None, 10**7) for n in range(4))
            )
        finally:
            await browser.stop()

    results = asyncio.run(run())
    assert len(results) == 4
    for n in range(4):
        assert "Quarterly capture report" in pdftotext((tmp_path / f"{n}.pdf").read_bytes())
    assert not list((tmp_path / "browser").glob("*.pid"))  # every browser retired
