"""Archives in and out, checked by listing them: same names, same bytes; unsafe ones refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

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
    assert out.headers["Content-Type"] == ARCHIVE_TYPES[dst]


# What a browser or curl -OJ needs to keep a download as the archive it is.
ARCHIVE_TYPES = {
    "zip": "application/zip",
    "7z": "application/x-7z-compressed",
    "tar": "application/x-tar",
    "tar.gz": "application/gzip",
    "tar.bz2": "application/x-bzip2",
    "tar.xz": "application/x-xz",
}


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
