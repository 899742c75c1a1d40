"""A web server on loopback that serves tests/corpus, for import/url: no machine here reaches
the internet. `/redirect?to=URL` answers 302 to URL; `/slow` sends one byte a second;
`/trickle?path=P` sends a corpus file over two seconds, `/gzipped?path=P` gzip-encoded in
transit; `/empty` sends nothing; `/big` sends
more than any test limit;
each request's path and headers are recorded."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

CORPUS = Path(__file__).resolve().parent / "corpus"


class FileServer:
    def __init__(self) -> None:
        self.hits: list[str] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, in order
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(CORPUS), **kwargs)

            def do_GET(self) -> None:
                server.hits.append(self.path)
                server.headers.append(dict(self.headers.items()))
                parts = urlsplit(self.path)
                if parts.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                    self.end_headers()
                    return
                if parts.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(1)
                    return
                if parts.path == "/trickle":  # a corpus file, a tenth of it every 0.2 s
                    body = (CORPUS / parse_qs(parts.query)["path"][0]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    step = len(body) // 10 + 1
                    try:
                        for start in range(0, len(body), step):
                            self.wfile.write(body[start : start + step])
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        pass
                    return
                if parts.path == "/gzipped":  # compressed in transit, asked for or not
                    body = gzip.compress((CORPUS / parse_qs(parts.query)["path"][0]).read_bytes())
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if parts.path == "/empty":
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if parts.path == "/big":
                    self.send_response(200)
                    self.end_headers()  # no Content-Length: the size shows only as it arrives
                    chunk = b"\0" * 65536
                    try:
                        for _ in range(1024):
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                    return
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.close()
