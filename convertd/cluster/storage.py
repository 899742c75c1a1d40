"""The storage folder several nodes share is the same folder on every node (issue 18): each
node compares the folder's mark (.convertd-storage) with the one the database has on record
before it takes a job. A node whose --storage is another folder (a share not mounted, whose
empty mount point would look like storage) would fail every job it took and serve none of the
others' files: it is refused at start, saying so."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from convertd.files import DataDir
from convertd.store import nodes
from convertd.store.db import Database

MARK = ".convertd-storage"


class StorageMismatch(Exception):
    """This node's storage folder is not the one the database's nodes share."""


def _read_or_make(folder: Path) -> tuple[str, bool]:
    """The folder's mark, and whether it was made just now (a link, so that nodes starting
    together agree on the first one written)."""
    path = folder / MARK
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    tmp = folder / f".{MARK}.{os.getpid()}.tmp"
    tmp.write_text(secrets.token_hex(16) + "\n")
    try:
        os.link(tmp, path)
        made = True
    except FileExistsError:
        made = False
    finally:
        tmp.unlink()
    return path.read_text().strip(), made


async def check(db: Database, data: DataDir) -> None:
    """Raise StorageMismatch unless this node's storage is the folder the others use."""
    folder = data.storage
    mark, made = await asyncio.to_thread(_read_or_make, folder)
    recorded = await nodes.storage_mark(db, mark)
    if recorded == mark:
        return
    if made:
        await asyncio.to_thread((folder / MARK).unlink)
        raise StorageMismatch(
            f"the storage folder {folder} is not the one the other nodes of this database use "
            f"(it had no {MARK} file; theirs has one): mount the shared folder there, or give "
            "--storage the path where it is mounted"
        )
    raise StorageMismatch(
        f"the storage folder {folder} belongs to another convertd database ({MARK} differs "
        "from the one on record): give --storage the folder this database's nodes share"
    )
