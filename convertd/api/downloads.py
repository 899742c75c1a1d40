"""How a file is handed to a client: its headers, and the signed links that open it without a
key (v1 downloads, v2 exported files and upload forms alike)."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from pathlib import Path
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from convertd.api.state import SIGNER
from convertd.errors import Forbidden
from convertd.files import extension_of

# Content types mimetypes may not know on a minimal system.
EXTRA_TYPES = {
    "webp": "image/webp",
    "ico": "image/vnd.microsoft.icon",
    "md5": "text/plain",
    "sha1": "text/plain",
    "sha256": "text/plain",
    "sha512": "text/plain",
    "crc32": "text/plain",
    "blake2b": "text/plain",
    "zip": "application/zip",
    "7z": "application/x-7z-compressed",
    "tar": "application/x-tar",
    "tar.gz": "application/gzip",
    "tar.bz2": "application/x-bzip2",
    "tar.xz": "application/x-xz",
}


def content_disposition(name: str) -> str:
    """RFC 6266 with an RFC 5987 `filename*` for names that are not plain ASCII."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def content_type(name: str) -> str:
    # By the whole extension: mimetypes calls `x.tar.gz` a tar with a gzip *encoding*, and
    # sending that as application/x-tar makes clients save an archive they cannot open.
    ext = extension_of(name)
    return EXTRA_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _headers(name: str, inline: bool) -> dict[str, str]:
    disposition = content_disposition(name)
    if inline:
        disposition = disposition.replace("attachment", "inline", 1)
    return {
        "Content-Disposition": disposition,
        "Content-Type": content_type(name),
        # A file shown inline (HTML, SVG) must not run script as this server's own page.
        "Content-Security-Policy": "sandbox",
        "X-Content-Type-Options": "nosniff",
    }


class _FileResponse(web.FileResponse):
    """aiohttp's, answering with the whole file a Range it would get wrong:
    - several ranges (`bytes=0-1,5-6`) or another unit, which it answers 416 though they may
      well be satisfiable. RFC 9110 (14.2) lets a server ignore a Range and send 200 with the
      whole body, which every client takes; a multipart/byteranges answer would be a second
      body format to keep right for what no client of ours asks;
    - an If-Range holding an entity tag, which it does not read (dates only) and so serves the
      range whatever the tag: a resumed download would splice two versions. Only a strong tag
      equal to the file's own keeps the range (RFC 9110 13.1.5)."""

    def __init__(self, path: Path, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers)
        self.path = path

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if (rng := request.headers.get(hdrs.RANGE)) is not None and not await self._serves(
            rng, request.headers.get(hdrs.IF_RANGE, "")
        ):
            headers = request.headers.copy()
            del headers[hdrs.RANGE]
            request = request.clone(headers=headers)
        return await super().prepare(request)

    async def _serves(self, rng: str, if_range: str) -> bool:
        if "," in rng or not rng.lower().startswith("bytes="):
            return False
        if not if_range.startswith(('"', "W/")):  # none, or a date: aiohttp's own check
            return True
        try:
            st = await asyncio.to_thread(os.stat, self.path)
        except OSError:
            return True  # FileResponse answers what it finds
        return if_range == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'  # FileResponse's ETag


def file_response(path: Path, name: str, *, inline: bool = False) -> web.FileResponse:
    """The file, to save as `name` (or to show, `inline`)."""
    return _FileResponse(path, headers=_headers(name, inline))


# A file up to this size, asked for plainly (GET, no range or condition), is read whole in one
# trip off the event loop and sent from memory: aiohttp's FileResponse takes three trips (stat
# and open, the send, the close), most of what a small job's download cost.
SMALL_FILE_BYTES = 64 * 1024
_CONDITIONS = (
    hdrs.RANGE,
    hdrs.IF_RANGE,
    hdrs.IF_MATCH,
    hdrs.IF_NONE_MATCH,
    hdrs.IF_MODIFIED_SINCE,
    hdrs.IF_UNMODIFIED_SINCE,
)


def _small_or_stat(path: Path) -> tuple[os.stat_result, bytes | None] | None:
    """The file's stat and, if it is small, its bytes; None if it is not a file (blocking)."""
    try:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            return st, fh.read(SMALL_FILE_BYTES + 1) if st.st_size <= SMALL_FILE_BYTES else None
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


async def send_file(
    request: web.Request, path: Path, name: str, *, inline: bool = False
) -> web.StreamResponse | None:
    """The file as file_response sends it (the same headers, ETag and Last-Modified as
    aiohttp's); None if there is no such file."""
    found = await asyncio.to_thread(_small_or_stat, path)
    if found is None:
        return None
    st, content = found
    plain = request.method == hdrs.METH_GET and not any(h in request.headers for h in _CONDITIONS)
    if content is None or len(content) != st.st_size or not plain:
        return file_response(path, name, inline=inline)
    headers = _headers(name, inline)
    response = web.Response(body=content, headers=headers)
    response.etag = f"{st.st_mtime_ns:x}-{st.st_size:x}"  # as FileResponse makes it
    response.last_modified = st.st_mtime
    response.headers[hdrs.ACCEPT_RANGES] = "bytes"
    return response


def check_signed(request: web.Request, purpose: str, subject: str, hint: str) -> None:
    """The request's `expires` and `signature` grant `purpose` on `subject`, or a 403."""
    expires = request.query.get("expires", "")
    signature = request.query.get("signature", "")
    if not expires or not signature:
        raise Forbidden("This link is not signed.", "Use the URL exactly as it was given.")
    if not request.app[SIGNER].check(purpose, subject, expires, signature):
        raise Forbidden("This link's signature is not valid, or the link has expired.", hint)
