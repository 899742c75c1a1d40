"""The archive operation: several task files into one zip, 7z or tar (plain or compressed)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import py7zr

TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}


def unique_names(files: list[Path]) -> list[str]:
    """Names inside the archive: each file's own, numbered where two inputs share one."""
    seen: dict[str, int] = {}
    names = []
    for path in files:
        name = path.name
        count = seen.get(name, 0)
        seen[name] = count + 1
        if count:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem}-{count + 1}.{ext}" if dot and stem else f"{name}-{count + 1}"
        names.append(name)
    return names


def make_archive(files: list[Path], dest: Path, fmt: str) -> None:
    """Blocking: write `files` into `dest` as a `fmt` archive."""
    names = unique_names(files)
    if fmt == "zip":
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path, name in zip(files, names, strict=True):
                zf.write(path, arcname=name)
    elif fmt == "7z":
        with py7zr.SevenZipFile(dest, "w") as archive:
            for path, name in zip(files, names, strict=True):
                archive.write(path, arcname=name)
    elif fmt in TAR_MODES:
        with tarfile.open(dest, TAR_MODES[fmt]) as tar:  # type: ignore[call-overload]
            for path, name in zip(files, names, strict=True):
                tar.add(path, arcname=name, recursive=False)
    else:
        raise ValueError(f"not an archive format: {fmt}")
