"""Hostile archives: zip-slip, absolute and drive names, links out of the archive, hardlinks,
bombs by ratio, declared size and entry count, in zip, tar and 7z. Every one is refused before
anything is written outside the job, and before the disk fills."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

import py7zr
import pytest
from py7zr.archiveinfo import write_uint64

from tests.conftest import Daemon


def evil_zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def evil_tar(members: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


def seven_zip(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A 7z with a plain (not encoded) header, so that it can be edited afterwards."""
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, py7zr.SevenZipFile(buf, "w") as archive:
        archive.set_encoded_header_mode(False)
        for i, (name, target) in enumerate((links or {}).items()):
            os.symlink(target, Path(tmp) / str(i))
            archive.write(Path(tmp) / str(i), name)
        for name, data in files.items():
            archive.writestr(data, name)
    return buf.getvalue()


def edit_7z_header(blob: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes (every occurrence) in a 7z header and fix its size and both CRCs: how
    names and sizes no honest writer would produce (py7zr refuses them) get into a test."""
    offset, size = struct.unpack_from("<QQ", blob, 12)
    start = 32 + offset
    header = blob[start : start + size]
    assert old in header, old
    header = header.replace(old, new)
    tail = struct.pack("<QQI", offset, len(header), zlib.crc32(header))
    return blob[:8] + struct.pack("<I", zlib.crc32(tail)) + tail + blob[32:start] + header


def renamed_7z(blob: bytes, old: str, new: str) -> bytes:
    return edit_7z_header(blob, old.encode("utf-16-le"), new.encode("utf-16-le"))


def number_7z(value: int) -> bytes:
    buf = io.BytesIO()
    write_uint64(buf, value)
    return buf.getvalue()


HOSTILE: list[tuple[str, bytes]] = [
    ("zip", evil_zip({"../../escape.txt": b"x"})),
    ("zip", evil_zip({"/etc/escape.txt": b"x"})),
    ("zip", evil_zip({"C:\\windows\\escape.txt": b"x"})),
    ("zip", evil_zip({"link/passwd": b"x"}, {"link": "/etc"})),
    ("zip", evil_zip({}, {"up": "../../.."})),
    ("tar", evil_tar([tar_member("../escape.txt")])),
    ("tar", evil_tar([tar_member("etc", tarfile.SYMTYPE, "/etc"), tar_member("etc/x")])),
    ("tar", evil_tar([tar_member("hard", tarfile.LNKTYPE, "/etc/passwd")])),
    ("7z", renamed_7z(seven_zip({"AA/AA/escape.txt": b"x"}), "AA/AA/", "../../")),
    ("7z", renamed_7z(seven_zip({"Z/etc/escape.txt": b"x"}), "Z/etc/", "//etc/")),
    ("7z", renamed_7z(seven_zip({"CZ_escape.txt": b"x"}), "CZ_", "C:\\")),
    ("7z", renamed_7z(seven_zip({"etC/escape.txt": b"x"}, {"etc": "/etc"}), "etC", "etc")),
    ("7z", seven_zip({}, {"up": "../../.."})),
]


@pytest.mark.parametrize(("fmt", "data"), HOSTILE)
def test_hostile_entries_are_refused(daemon: Daemon, key: str, fmt: str, data: bytes) -> None:
    before = set(Path("/tmp").iterdir())
    status, out = daemon.convert_and_fetch(key, data, f"evil.{fmt}", "archive", "zip")
    assert out is None and status["status"] == "failed"
    assert "outside" in status["error"] or "link" in status["error"]
    assert not (daemon.data_dir / "escape.txt").exists()
    assert not (daemon.data_dir.parent / "escape.txt").exists()
    assert {p for p in Path("/tmp").iterdir() if p.name == "escape.txt"} - before == set()


def test_zip_bomb_is_refused(daemon: Daemon, key: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("zeros.bin", "w") as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(400):
                fh.write(chunk)
    status, out = daemon.convert_and_fetch(key, buf.getvalue(), "bomb.zip", "archive", "tar")
    assert out is None and "bomb" in status["error"]


@pytest.mark.parametrize(
    ("declared", "error"),
    [(2**40, "more than 4 GiB"), (2**30, "bomb")],
)
def test_7z_declared_sizes_are_checked_before_unpacking(
    daemon: Daemon, key: str, declared: int, error: str
) -> None:
    honest = seven_zip({"zeros.bin": bytes(54_321)})
    lying = edit_7z_header(honest, number_7z(54_321), number_7z(declared))
    status, out = daemon.convert_and_fetch(key, lying, "huge.7z", "archive", "zip")
    assert out is None and status["status"] == "failed"
    assert error in status["error"]


def test_nested_and_overlapping_zips(daemon: Daemon, key: str) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (5 * 1024 * 1024))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        for n in range(16):
            zf.writestr(f"layer{n}.zip", inner.getvalue())
    # Nested archives are carried as files, never unpacked recursively.
    status, out = daemon.convert_and_fetch(key, outer.getvalue(), "nested.zip", "archive", "tar")
    assert out is not None, status
    assert len(out.content) < 2 * 1024 * 1024
    # Overlapping entries: a central directory pointing twice at one local file.
    data = bytearray(outer.getvalue())
    status, out = daemon.convert_and_fetch(
        key, bytes(data[: len(data) // 2]) + bytes(data[-200:]), "overlap.zip", "archive", "tar"
    )
    assert status["status"] in {"failed", "finished"}


def many_empty_entries(fmt: str, count: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            for n in range(count):
                zf.writestr(f"e{n}", b"")
    else:
        with py7zr.SevenZipFile(buf, "w") as archive:
            for n in range(count):
                archive.writestr(b"", f"e{n}")
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "count"), [("zip", 25_000), ("7z", 100_000)])
def test_too_many_entries_is_refused(daemon: Daemon, key: str, fmt: str, count: int) -> None:
    data = many_empty_entries(fmt, count)
    status, out = daemon.convert_and_fetch(key, data, f"many.{fmt}", "archive", "tar")
    assert out is None and "more than 20,000 entries" in status["error"]
