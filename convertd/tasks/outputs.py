"""A task's files: how they are linked in from another task, and described in its result."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

# Why a hard link may be impossible where a copy is not: another file system, a file system
# without links, too many links to the file.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP}


def link_or_copy(source: Path, dest: Path) -> None:
    """`dest` as a new name for `source` (a copy where a link cannot be made); never writes
    into an existing file, which may be another task's (a link shares its bytes)."""
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        tmp = dest.with_name(f".{dest.name}.copy")
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)


def describe(directory: Path) -> list[dict[str, Any]]:
    return [
        {"filename": path.name, "size": path.stat().st_size}
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.name.startswith(".")
    ]
