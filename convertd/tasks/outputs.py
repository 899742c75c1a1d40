"""A task's files: how they are linked in from another task, and described in its result."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def describe(directory: Path) -> list[dict[str, Any]]:
    return [
        {"filename": path.name, "size": path.stat().st_size}
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.name.startswith(".")
    ]
