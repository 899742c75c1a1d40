"""Moving a batch's files into the upload area, crash-safely.

A manifest (each member's path, place in the batch, size and time) is written into the batch's
folder before anything moves. Then each member is renamed in (across filesystems: copied to a
hidden name, renamed into place, and only then removed from the inbox). If a member changed or
could not be moved, the members already moved go back and the batch is not taken: a batch is
one result, never a part of one. After a crash, `finish` completes the move from the manifest,
so a batch is never split in two, nor a file taken twice.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from convertd.drops.waiting import Candidate

MANIFEST = ".batch.json"
COPYING = ".copying"


class NotTaken(Exception):
    """A member changed or could not be moved: the batch was put back as it was."""


def member_path(folder: Path, relative: str) -> Path:
    return folder / PurePosixPath(relative)


def move_in(batch: list[Candidate], folder: Path, base: Path) -> None:
    """Blocking: the members (relative to `base`, the batch's folder in the inbox, or the
    rule's folder for loose files) into `folder`, or none of them (NotTaken says why)."""
    folder.mkdir(mode=0o700)
    members = [
        {
            "source": os.fsdecode(cand.path),
            "relative": cand.path.relative_to(base).as_posix(),
            "size": cand.size,
            "mtime_ns": cand.mtime_ns,
        }
        for cand in batch
    ]
    _write_manifest(folder, members)
    moved: list[dict[str, object]] = []
    for member in members:
        try:
            _move(member, folder)
        except (OSError, NotTaken) as exc:
            for done in reversed(moved):
                _move_back(done, folder)
            (folder / MANIFEST).unlink(missing_ok=True)
            reason = exc if isinstance(exc, NotTaken) else exc.strerror or exc
            raise NotTaken(f"{member['relative']}: {reason}") from None
        moved.append(member)


def finish(folder: Path) -> int:
    """Blocking, after a crash: complete a move_in from its manifest; how many files the batch
    holds. A member whose source changed meanwhile stays where it is, for a later batch."""
    try:
        members = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        members = []
    for member in members:
        with contextlib.suppress(OSError, NotTaken):
            _move(member, folder)
    for copying in folder.rglob(f"*{COPYING}"):
        copying.unlink(missing_ok=True)
    return len(batch_files(folder))


def batch_files(folder: Path) -> list[Path]:
    """Blocking: a batch's files, in its subfolders too, in the order of their paths in it
    (file-name order); hidden ones (the manifest, a copy under way) are not the batch's."""
    return sorted(
        (
            p
            for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        ),
        key=lambda p: p.relative_to(folder).parts,
    )


def settled_in(folder: Path) -> None:
    """Blocking: the batch is queued; its manifest is no longer needed (nor shown to people in
    processed/ or failed/)."""
    (folder / MANIFEST).unlink(missing_ok=True)


def _move(member: dict[str, object], folder: Path) -> None:
    source = Path(str(member["source"]))
    dest = member_path(folder, str(member["relative"]))
    expected = (member["size"], member["mtime_ns"])
    try:
        st = os.stat(source, follow_symlinks=False)
    except FileNotFoundError:
        if dest.exists():
            return  # moved already (before a crash)
        raise
    if (st.st_size, st.st_mtime_ns) != expected:
        raise NotTaken("it changed after it settled")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # copied across filesystems before a crash; the source is the same
        os.unlink(source)
        return
    try:
        os.rename(source, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    copying = dest.with_name(f".{dest.name}{COPYING}")
    try:
        shutil.copyfile(source, copying)
        st = os.stat(source)
        if (st.st_size, st.st_mtime_ns) != expected:
            raise NotTaken("it changed while it was copied")
        os.rename(copying, dest)
    finally:
        copying.unlink(missing_ok=True)
    os.unlink(source)


def _move_back(member: dict[str, object], folder: Path) -> None:
    source = Path(str(member["source"]))
    dest = member_path(folder, str(member["relative"]))
    source.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(dest, source)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copy2(dest, source)
        os.unlink(dest)


def _write_manifest(folder: Path, members: list[dict[str, object]]) -> None:
    temp = folder / f"{MANIFEST}.tmp"
    with temp.open("w", encoding="utf-8") as fh:
        json.dump(members, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, folder / MANIFEST)
