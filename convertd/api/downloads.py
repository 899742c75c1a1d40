"""How a file is handed to a client: its headers, and the signed links that open it without a
key (v1 downloads, v2 exported files and upload forms alike)."""

from __future__ import annotations

import asyncio
import math
import mimetypes
import os
import re
import stat
from pathlib import Path
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from convertd.api.state import SIGNER
from convertd.errors import Forbidden, RangeNotSatisfiable
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
    """aiohttp's, answering the one byte range send_file chose (see _range_to_send), or the
    whole file: aiohttp reads Range and If-Range itself otherwise, and gets some wrong."""

    def __init__(self, path: Path, headers: dict[str, str], byte_range: str | None) -> None:
        super().__init__(path, headers=headers)
        self.byte_range = byte_range

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        rng = request.headers.get(hdrs.RANGE)
        wanted = None if self.byte_range is None else f"bytes={self.byte_range}"
        # A clone costs about 19 us: only when aiohttp would read something else than chosen.
        if rng != wanted or hdrs.IF_RANGE in request.headers:
            headers = request.headers.copy()
            headers.popall(hdrs.RANGE, None)
            headers.popall(hdrs.IF_RANGE, None)  # decided already
            if self.byte_range is not None:
                headers[hdrs.RANGE] = f"bytes={self.byte_range}"
            request = request.clone(headers=headers)
        return await super().prepare(request)


def _etag(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"  # as aiohttp's FileResponse makes it


# One byte-range-spec (RFC 9110 14.1.1): first-last, first- or -suffix, of any length (the
# header's is bounded by aiohttp's limit on a header line).
_SPEC = re.compile(r"(\d*)-(\d*)")
_DIGITS = 19  # enough for any file's size; a longer number is past any end, and never parsed
# Conditions aiohttp reads before any range (RFC 9110 13.2.2's order).
_PRECONDITIONS = (
    hdrs.IF_MATCH,
    hdrs.IF_NONE_MATCH,
    hdrs.IF_MODIFIED_SINCE,
    hdrs.IF_UNMODIFIED_SINCE,
)


def _range_to_send(request: web.Request, st: os.stat_result) -> str | None:
    """The byte range to answer with 206, or None for the whole file; RangeNotSatisfiable for
    a range that holds no byte of it. aiohttp alone gets these wrong:
    - several ranges (`bytes=0-1,5-6`), another unit or a malformed range, which it answers 416
      though they may well be satisfiable. RFC 9110 (14.2) lets a server ignore a Range and send
      200 with the whole body, which every client takes; a multipart/byteranges answer would be
      a second body format to keep right for what no client of ours asks. Empty list elements
      are no ranges (RFC 9110 5.6.1): `bytes=0-1,` is the one range 0-1;
    - `bytes=-0`, the last 0 bytes, which it serves as the whole file with a 206;
    - an If-Range holding an entity tag, which it does not read (dates only) and so serves the
      range whatever the tag: a resumed download would splice two versions. Only a strong tag
      equal to the file's own keeps the range (RFC 9110 13.1.5); a date keeps it only if the
      file is no newer (to the second, as Last-Modified says it)."""
    unit, _, specs = request.headers.get(hdrs.RANGE, "").partition("=")
    ranges = [spec.strip() for spec in specs.split(",") if spec.strip()]
    if unit.strip().lower() != "bytes" or len(ranges) != 1 or st.st_size == 0:
        return None
    if (match := _SPEC.fullmatch(ranges[0])) is None:
        return None
    if (if_range := request.headers.get(hdrs.IF_RANGE)) is not None:
        if if_range.startswith(('"', "W/")):
            if if_range != f'"{_etag(st)}"':
                return None
        # Last-Modified is the file's time rounded up to the second (aiohttp's last_modified).
        elif (since := request.if_range) is None or math.ceil(st.st_mtime) > since.timestamp():
            return None
    first, last = (_offset(digits) for digits in match.groups())
    if first is None and last is None:
        return None  # malformed (RFC 9110 14.1.1): ignored
    if first is not None and last is not None and last < first:
        return None  # malformed too
    if first >= st.st_size if first is not None else last == 0:
        if any(h in request.headers for h in _PRECONDITIONS):
            # aiohttp answers them (412, 304) and RFC 9110 reads them first: the range is
            # ignored instead of judged here.
            return None
        raise RangeNotSatisfiable(f"bytes={ranges[0]}", st.st_size)
    if max(map(len, match.groups())) <= _DIGITS:
        return ranges[0]  # as asked: aiohttp reads it as it came, with no clone of the request
    if first is None:  # a suffix longer than the file is the whole file
        return f"-{min(last or 0, st.st_size)}"
    return f"{first}-" if last is None else f"{first}-{min(last, st.st_size - 1)}"


def _offset(digits: str) -> int | None:
    """A range's number (None if absent); one of more than _DIGITS digits (leading zeros
    aside) is taken as 2**64, past any file, rather than parsed."""
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _DIGITS else 2**64


# A file up to this size, asked for plainly (GET, no range or condition), is read whole in one
# trip off the event loop and sent from memory: aiohttp's FileResponse takes three trips (stat
# and open, the send, the close), most of what a small job's download cost.
SMALL_FILE_BYTES = 64 * 1024
_CONDITIONS = (hdrs.RANGE, hdrs.IF_RANGE, *_PRECONDITIONS)


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
    """The file, to save as `name` (or to show, `inline`), whole or the one range asked for,
    with aiohttp's ETag and Last-Modified and conditions; None if there is no such file."""
    found = await asyncio.to_thread(_small_or_stat, path)
    if found is None:
        return None
    st, content = found
    headers = _headers(name, inline)
    plain = request.method == hdrs.METH_GET and not any(h in request.headers for h in _CONDITIONS)
    if content is None or len(content) != st.st_size or not plain:
        return _FileResponse(path, headers, _range_to_send(request, st))
    response = web.Response(body=content, headers=headers)
    response.etag = _etag(st)
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
