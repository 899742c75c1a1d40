"""The storage folder several nodes share is the same folder on every node (issue 18): before a
node writes there or takes a job, it compares the folder's mark (.convertd-storage) with the
one the database has on record, then writes a new one to both. A node whose --storage is
another folder is refused at start, saying so: a share not mounted (its empty mount point), a
read-only one, or a copy of the share (whose mark is the one of when it was copied, and a node
has started since). Without this it would fail every job it took and serve none of the others'
files."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from convertd.files import DataDir, StorageMissing
from convertd.store import nodes
from convertd.store.db import Database

MARK = ".convertd-storage"
# Two nodes starting together may see the mark between one's two writes: look again before
# calling it another folder.
LOOKS = 5
LOOK_AGAIN_SECONDS = 1.0


class StorageMismatch(Exception):
    """This node's storage folder is not the one the database's nodes share."""


def _read(folder: Path) -> str | None:
    try:
        return (folder / MARK).read_text().strip()
    except FileNotFoundError:
        return None


def _write(folder: Path, mark: str) -> None:
    """The mark written in one rename; first of all, this is how a read-only folder shows."""
    tmp = folder / f".{MARK}.{os.getpid()}.tmp"
    try:
        tmp.write_text(mark + "\n")
        os.replace(tmp, folder / MARK)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageMissing(
            f"cannot write in the storage folder {folder}: {exc.strerror}"
        ) from None


def _probe(folder: Path) -> None:
    probe = folder / f".{MARK}.{os.getpid()}.probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageMissing(
            f"cannot write in the storage folder {folder}: {exc.strerror}"
        ) from None


async def check(db: Database, data: DataDir) -> None:
    """Raise StorageMismatch (or StorageMissing) unless this node's storage is the folder the
    others use; then mark it anew, so that a copy of it taken before now is told apart."""
    folder = data.storage
    seen = await asyncio.to_thread(_read, folder)
    # Writable, before anything is on record: a read-only folder changes nothing.
    await asyncio.to_thread(_probe, folder)
    fresh = secrets.token_hex(16)
    for look in range(LOOKS):
        if await nodes.storage_mark_moved(db, seen, fresh):
            await asyncio.to_thread(_write, folder, fresh)
            return
        if look < LOOKS - 1:
            await asyncio.sleep(LOOK_AGAIN_SECONDS)
            seen = await asyncio.to_thread(_read, folder)
    if seen is None:
        raise StorageMismatch(
            f"the storage folder {folder} is not the one the other nodes of this database use "
            f"(it has no {MARK} file; theirs has one): mount the shared folder there, or give "
            "--storage the path where it is mounted"
        )
    raise StorageMismatch(
        f"the storage folder {folder} is not the one the other nodes of this database use: its "
        f"{MARK} is not the one on record (another convertd's folder, or a copy of the share): "
        "give --storage the path where the shared folder is mounted"
    )
