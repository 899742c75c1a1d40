"""Putting files into folders people read: never over an existing name, never half-written, and
the report beside a file that could not be converted."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path

from convertd import clock
from convertd.drops.rules import PIPELINE, WatchRule
from convertd.files import extension_of, stem_of


def display(path: bytes | Path) -> str:
    """A path for people and logs: names need not be UTF-8 on disk."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", errors="replace")


def unique_path(directory: Path, name: str) -> Path:
    """`name`, or `stem (1).ext`, `stem (2).ext`, ...: the first that does not exist yet."""
    candidate = directory / name
    n = 1
    while candidate.exists() or candidate.is_symlink():
        ext = extension_of(name)
        stem = stem_of(name)
        candidate = directory / (f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})")
        n += 1
    return candidate


def place_file(src: Path, directory: Path, name: str, *, move: bool) -> Path:
    """Put a file in `directory` under a name not yet taken; never overwrite. A rename where
    possible, else a copy to a temporary name, then a link to the final name (which fails
    instead of overwriting if another writer took the name first)."""
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        target = unique_path(directory, name)
        if move:
            try:
                os.link(src, target)  # atomic, and refuses an existing name
                os.unlink(src)
                return target
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
        temp = directory / f".{target.name}.convertd-tmp"
        shutil.copyfile(src, temp)
        try:
            os.link(temp, target)
        except FileExistsError:
            continue
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        if move:
            os.unlink(src)
        return target


def place_folder(src: Path, directory: Path, name: str) -> Path:
    """A batch's folder moved into `directory` under a name not yet taken (copied, then
    removed, across filesystems)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = unique_path(directory, name)
    try:
        os.rename(src, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        temp = directory / f".{target.name}.convertd-tmp"
        shutil.rmtree(temp, ignore_errors=True)
        shutil.copytree(src, temp)
        os.rename(temp, target)
        shutil.rmtree(src)
    return target


def publish_copy(result: Path, target: Path) -> None:
    """Copy a result to `target` (chosen beforehand) under a temporary name, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.convertd-tmp"
    shutil.copyfile(result, temp)
    os.replace(temp, target)


def fail_file(
    rule: WatchRule,
    src: Path,
    fmt: str,
    name: str,
    reason: str,
    job_id: str | None,
    came_from: Path,
) -> Path:
    """Move an original that cannot be converted to the rule's failed folder (a copy, for a
    `keep` rule, whose originals never leave their place), with a report for people
    (NAME.error.txt) and one for scripts (NAME.error.json). `came_from` is the folder it was
    dropped in, where the report says to move it back: not the rule's folder, whose root the
    inbox skips (a file goes in inbox/<format>/), nor where `src` is now (the upload area)."""
    keep = rule.originals == "keep" and src.parent.is_relative_to(rule.folder)
    if src.is_dir():  # a batch: its files, together, as they came
        target = place_folder(src, rule.failed_dir(fmt), name)
    else:
        target = place_file(src, rule.failed_dir(fmt), name, move=not keep)
    shown = display(os.fsencode(target.name))  # for people: the report is text
    when = clock.iso(clock.now())
    report = {
        "file": shown,
        "error": reason,
        "job_id": job_id,
        "rule": rule.name,
        "output_format": fmt,
        "failed_at": when,
    }
    what = "go through the steps of" if fmt == PIPELINE else f"be converted to {fmt} by"
    (target.parent / f"{target.name}.error.txt").write_text(
        f"{shown} could not {what} the rule {rule.name}.\n\nReason: {reason}\n"
        f"Job: {job_id or '-'}\nTime: {when} UTC\n\n"
        f"To try again, move {shown} back into {display(came_from)}.\n",
        encoding="utf-8",
    )
    (target.parent / f"{target.name}.error.json").write_text(
        json.dumps(report, indent=2), encoding="utf-8"
    )
    return target
