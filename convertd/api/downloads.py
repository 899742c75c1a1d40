"""How a file is handed to a client: its Content-Type and Content-Disposition (v1 downloads and
v2 exported links alike)."""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

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
