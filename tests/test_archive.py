"""Archives in and out, checked by listing them: same names, same bytes; unsafe ones refused."""

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

from tests.conftest import CORPUS, Daemon

FORMATS = ["zip", "7z", "tar", "tar.gz", "tar.bz2", "tar.xz"]
CONTENT = {
    "readme.txt": b"hello archive\n",
    "docs/Grüße.md": "ünïcode name and body ✓\n".encode(),
    "docs/deep/empty.bin": b"",
    "data/random.bin": bytes(range(256)) * 40,
}


def build(fmt: str, files: dict[str, bytes], tmp: Path) -> bytes:
    path = tmp / f"made.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    elif fmt == "7z":
        src = tmp / "src7z"
        for name, data in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        with py7zr.SevenZipFile(path, "w") as archive:
            for name in files:
                archive.write(src / name, arcname=name)
    else:
        mode = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[fmt]
        with tarfile.open(path, mode) as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def listing(fmt: str, data: bytes, tmp: Path, password: str | None = None) -> dict[str, bytes]:
    """Regular files in an archive, by name, with their bytes."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"out.{fmt}"
    path.write_bytes(data)
    if fmt == "zip":
        with zipfile.ZipFile(path) as zf:
            return {
                i.filename: zf.read(i)
                for i in zf.infolist()
                if not i.is_dir() and not stat.S_ISLNK(i.external_attr >> 16)
            }
    if fmt == "7z":
        out = tmp / "x7z"
        with py7zr.SevenZipFile(path, password=password) as archive:
            names = [e.filename for e in archive.list() if not e.is_directory and not e.is_symlink]
            archive.extractall(out)
        return {n: (out / n).read_bytes() for n in names}
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.parametrize("src", FORMATS)
@pytest.mark.parametrize("dst", FORMATS)
def test_every_pair_keeps_names_and_bytes(
    daemon: Daemon, key: str, src: str, dst: str, tmp_path: Path
) -> None:
    data = build(src, CONTENT, tmp_path)
    status, out = daemon.convert_and_fetch(key, data, f"bundle.{src}", "archive", dst)
    assert out is not None, status
    assert status["file_name"] == f"bundle.{dst}"
    assert listing(dst, out.content, tmp_path) == CONTENT


def test_compression_level_and_password(daemon: Daemon, key: str, tmp_path: Path) -> None:
    big = {"zeros.txt": b"a" * 500_000 + bytes(range(256)) * 200}
    data = build("tar", big, tmp_path)
    _, stored = daemon.convert_and_fetch(
        key, data, "b.tar", "archive", "zip", {"compression_level": 0}
    )
    _, packed = daemon.convert_and_fetch(
        key, data, "b.tar", "archive", "zip", {"compression_level": 9}
    )
    assert stored is not None and packed is not None
    assert len(packed.content) < len(stored.content) / 5
    _, locked = daemon.convert_and_fetch(
        key, data, "b.tar", "archive", "7z", {"password": "s3cret"}
    )
    assert locked is not None
    with pytest.raises(py7zr.exceptions.PasswordRequired):
        listing("7z", locked.content, tmp_path)
    assert listing("7z", locked.content, tmp_path, password="s3cret") == big


@pytest.mark.parametrize(
    ("name", "fmt", "password"),
    [
        ("office-docs.zip", "zip", None),
        ("office-docs.tar.gz", "tar.gz", None),
        ("solid-lzma2.7z", "7z", None),
        ("umlaut-filename.7z", "7z", None),
        ("zstd-codec.7z", "7z", None),
        ("aes-encrypted.7z", "7z", "secret"),
        ("header-encrypted.7z", "7z", "hello"),
        ("shift-jis-names.zip", "zip", None),
    ],
)
def test_real_world_archives(
    daemon: Daemon, key: str, name: str, fmt: str, password: str | None, tmp_path: Path
) -> None:
    data = (CORPUS / "archive" / name).read_bytes()
    source = (
        listing(fmt, data, tmp_path / "src", password)
        if fmt != "zip" or "shift" not in name
        else None
    )
    options = {"password": password} if password else None
    status, out = daemon.convert_and_fetch(key, data, name, "archive", "tar", options)
    assert out is not None, status
    result = listing("tar", out.content, tmp_path)
    if source is not None:
        assert sorted(result.values()) == sorted(source.values())
    else:  # Shift-JIS names come out readable
        assert any(
            any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in n) for n in result
        ), list(result)


def test_links_stay_links(daemon: Daemon, key: str, tmp_path: Path) -> None:
    data = (CORPUS / "archive" / "symlinks.7z").read_bytes()
    _, out = daemon.convert_and_fetch(key, data, "links.7z", "archive", "tar.gz")
    assert out is not None
    with tarfile.open(fileobj=io.BytesIO(out.content)) as tf:
        links = {m.name: m.linkname for m in tf if m.issym()}
    assert links["lib/libabc.so"] == "libabc.so.1" and links["lib64"] == "lib"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("legacy-shrink-implode.zip", "compression method"),
        ("winzip-aes-mixed.zip", "AES"),
        ("aes-encrypted.7z", "password"),
    ],
)
def test_unreadable_archives_fail_clearly(daemon: Daemon, key: str, name: str, error: str) -> None:
    data = (CORPUS / "archive" / name).read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, "archive", "zip")
    assert out is None and error in status["error"]


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


def test_corrupt_archives_fail_cleanly(daemon: Daemon, key: str) -> None:
    for fmt in FORMATS:
        status, out = daemon.convert_and_fetch(
            key, b"definitely not an archive " * 10, f"bad.{fmt}", "archive", "zip"
        )
        assert out is None and status["status"] == "failed", fmt
        assert "Traceback" not in status["error"]


def test_password_only_where_it_means_something(daemon: Daemon, key: str, tmp_path: Path) -> None:
    data = build("tar", CONTENT, tmp_path)
    status, out = daemon.convert_and_fetch(key, data, "b.tar", "archive", "zip", {"password": "x"})
    assert out is None and "password" in status["error"]


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


def test_7z_with_100k_empty_entries_is_refused(daemon: Daemon, key: str) -> None:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        for i in range(100_000):
            archive.writestr(b"", f"e{i}")
    status, out = daemon.convert_and_fetch(key, buf.getvalue(), "many.7z", "archive", "zip")
    assert out is None and "more than 20,000 entries" in status["error"]
