"""How a file is handed to a client: its headers, and the signed links that open it without a
key (v1 downloads, v2 exported files and upload forms alike)."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

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


def file_response(path: Path, name: str, *, inline: bool = False) -> web.FileResponse:
    """The file, to save as `name` (or to show, `inline`)."""
    disposition = content_disposition(name)
    if inline:
        disposition = disposition.replace("attachment", "inline", 1)
    return web.FileResponse(
        path,
        headers={
            "Content-Disposition": disposition,
            "Content-Type": content_type(name),
            # A file shown inline (HTML, SVG) must not run script as this server's own page.
            "Content-Security-Policy": "sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )


def check_signed(request: web.Request, purpose: str, subject: str, hint: str) -> None:
    """The request's `expires` and `signature` grant `purpose` on `subject`, or a 403."""
    expires = request.query.get("expires", "")
    signature = request.query.get("signature", "")
    if not expires or not signature:
        raise Forbidden("This link is not signed.", "Use the URL exactly as it was given.")
    if not request.app[SIGNER].check(purpose, subject, expires, signature):
        raise Forbidden("This link's signature is not valid, or the link has expired.", hint)
