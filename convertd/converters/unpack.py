"""Archives unpacked and packed safely: zip, 7z and tar (plain, gz, bz2, xz).

Every entry is checked before anything is written: no absolute paths, no `..`, no drive letters,
no link that points outside the archive, nothing written through a link; entry count, total size
and compression ratio are capped, and sizes are counted as bytes arrive, not taken from headers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

import py7zr
from py7zr.exceptions import Bad7zFile, PasswordRequired, UnsupportedCompressionMethodError
from py7zr.io import BytesIOFactory

from convertd.errors import ConversionError

logger = logging.getLogger(__name__)

FORMATS = ("zip", "7z", "tar", "tar.gz", "tar.bz2", "tar.xz")
TAR_MODES = {"tar": "", "tar.gz": "gz", "tar.bz2": "bz2", "tar.xz": "xz"}
MAX_ENTRIES = 20_000
MAX_TOTAL_BYTES = 4 * 1024**3
# Real data rarely compresses better than 100:1; bombs do by orders of magnitude.
MAX_RATIO = 200
MIN_SIZE_FOR_RATIO = 10 * 1024**2
CHUNK = 1024 * 1024
MAX_LINK_TARGET = 4096  # PATH_MAX


@dataclasses.dataclass
class Budget:
    """Bytes and entries an archive may still unpack, shared by all its entries."""

    compressed_size: int
    written: int = 0
    entries: int = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise ConversionError(f"The archive has more than {MAX_ENTRIES:,} entries")

    def add(self, n: int) -> None:
        self.written += n
        if self.written > MAX_TOTAL_BYTES:
            raise ConversionError(
                f"The archive unpacks to more than {MAX_TOTAL_BYTES // 1024**3} GiB"
            )
        if self.written > MIN_SIZE_FOR_RATIO and self.written > MAX_RATIO * max(
            self.compressed_size, 1
        ):
            raise ConversionError(
                "The archive expands more than 200 times its size: refusing a likely zip bomb"
            )


def safe_name(raw: str) -> PurePosixPath:
    """The entry's path relative to the archive root, or a ConversionError naming it."""
    name = raw.replace("\\", "/")
    path = PurePosixPath(name)
    if (
        not name
        or "\x00" in name
        or name.startswith("/")
        or (len(name) > 1 and name[1] == ":")
        or any(part == ".." for part in path.parts)
    ):
        raise ConversionError(f"The archive entry {raw!r} points outside the archive; refusing it")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts:
        raise ConversionError(f"The archive entry {raw!r} has no name")
    return PurePosixPath(*parts)


def check_link(name: PurePosixPath, target: str) -> None:
    """A link may only point at something inside the archive, by a relative path."""
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise ConversionError(f"The archive link {str(name)!r} points outside the archive")
    depth = len(name.parts) - 1
    for part in PurePosixPath(target.replace("\\", "/")).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise ConversionError(f"The archive link {str(name)!r} points outside the archive")


def destination(root: Path, name: PurePosixPath) -> Path:
    """Where an entry goes, after checking no link on the way leads out of `root`."""
    target = root.joinpath(*name.parts)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not parent.resolve().is_relative_to(root.resolve()):
        raise ConversionError(f"The archive entry {str(name)!r} would be written through a link")
    if target.is_symlink():
        raise ConversionError(f"The archive entry {str(name)!r} would overwrite a link")
    return target


def copy_counted(src: IO[bytes], target: Path, budget: Budget) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            budget.add(len(chunk))
            out.write(chunk)


def make_link(root: Path, name: PurePosixPath, target: str) -> None:
    check_link(name, target)
    path = destination(root, name)
    if path.exists():
        raise ConversionError(f"The archive has two entries named {str(name)!r}")
    os.symlink(target, path)


def zip_name(info: zipfile.ZipInfo) -> str:
    """Names from tools that wrote neither UTF-8 nor the UTF-8 flag: try UTF-8, then Shift-JIS
    (a common case), before settling for zipfile's cp437."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437")
    for encoding in ("utf-8", "cp932"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def unpack_zip(src: Path, root: Path, password: str | None) -> None:
    budget = Budget(src.stat().st_size)
    try:
        with zipfile.ZipFile(src) as zf:
            for info in zf.infolist():
                budget.entry()
                name = safe_name(zip_name(info))
                mode = info.external_attr >> 16
                if info.flag_bits & 0x1 and info.compress_type == 99:
                    raise ConversionError(
                        "This zip uses AES encryption, which convertd cannot read"
                    )
                if stat.S_ISLNK(mode):
                    make_link(root, name, zf.read(info).decode("utf-8", "replace"))
                elif info.is_dir():
                    destination(root, name).mkdir(exist_ok=True)
                else:
                    pwd = password.encode() if password else None
                    with zf.open(info, pwd=pwd) as fh:
                        copy_counted(fh, destination(root, name), budget)
    except zipfile.BadZipFile as exc:
        raise ConversionError("Input is not a valid zip archive") from exc
    except NotImplementedError as exc:
        raise ConversionError(
            f"The zip uses a compression method convertd cannot read ({exc})"
        ) from exc
    except RuntimeError as exc:  # zipfile's "password required" / "bad password"
        if "password" in str(exc).lower():
            raise ConversionError(
                "The zip is encrypted: send the right password in the 'password' option"
            ) from exc
        raise


def unpack_tar(src: Path, root: Path) -> None:
    budget = Budget(src.stat().st_size)
    try:
        with tarfile.open(src, "r:*") as tf:
            for member in tf:
                budget.entry()
                name = safe_name(member.name)
                if member.issym():
                    make_link(root, name, member.linkname)
                elif member.islnk():
                    raise ConversionError(
                        f"The archive entry {str(name)!r} is a hard link, which convertd refuses"
                    )
                elif member.isdir():
                    destination(root, name).mkdir(exist_ok=True)
                elif member.isfile():
                    fh = tf.extractfile(member)
                    assert fh is not None
                    copy_counted(fh, destination(root, name), budget)
                # Devices, FIFOs and other specials are never created.
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, ConversionError):
            raise
        raise ConversionError("Input is not a valid tar archive") from exc


def unpack_7z(src: Path, root: Path, password: str | None) -> None:
    budget = Budget(src.stat().st_size)
    try:
        with py7zr.SevenZipFile(src, password=password) as archive:
            entries = archive.list()
            declared = 0
            for entry in entries:
                budget.entry()
                safe_name(entry.filename)
                declared += entry.uncompressed or 0
            if declared > MAX_TOTAL_BYTES:
                raise ConversionError(
                    f"The archive unpacks to more than {MAX_TOTAL_BYTES // 1024**3} GiB"
                )
            budget.add(declared)
            links = [e.filename for e in entries if e.is_symlink]
            files = [e.filename for e in entries if not e.is_symlink]
            if links:
                # Link targets are read into memory and checked before anything is written.
                targets = BytesIOFactory(limit=MAX_LINK_TARGET)
                archive.extract(targets=links, factory=targets)
                archive.reset()
                for name in links:
                    target = targets.products[name].read().decode("utf-8", errors="replace")
                    check_link(safe_name(name), target)
            # Files first, links last: nothing is ever written through a link from the archive.
            if files:
                archive.extract(path=root, targets=files)
            if links:
                archive.reset()
                archive.extract(path=root, targets=links)
    except PasswordRequired as exc:
        raise ConversionError(
            "The 7z archive is encrypted: send its password in the 'password' option"
        ) from exc
    except UnsupportedCompressionMethodError as exc:
        raise ConversionError(
            "The 7z archive uses a compression method convertd cannot read"
        ) from exc
    except (Bad7zFile, EOFError, KeyError, ValueError, TypeError, OSError) as exc:
        if isinstance(exc, ConversionError):
            raise
        wrong = password and "password" not in str(exc).lower()
        raise ConversionError(
            "Could not open the 7z archive (damaged, or a wrong password)"
            if wrong
            else "Input is not a valid 7z archive"
        ) from exc
    # py7zr makes the links itself; check what it made, whatever the archive claimed.
    for path in root.rglob("*"):
        if path.is_symlink():
            check_link(PurePosixPath(path.relative_to(root).as_posix()), os.readlink(path))


def entries_of(root: Path) -> list[Path]:
    """Everything unpacked, parents before children, links not followed."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        out.extend(base / d for d in dirnames)
        out.extend(base / f for f in sorted(filenames))
    return out


def pack_zip(root: Path, dst: Path, level: int | None) -> None:
    method = zipfile.ZIP_STORED if level == 0 else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(dst, "w", compression=method, compresslevel=level or None) as zf:
        for path in entries_of(root):
            arcname = path.relative_to(root).as_posix()
            if path.is_symlink():
                info = zipfile.ZipInfo(arcname)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, os.readlink(path))
            elif path.is_dir():
                zf.write(path, arcname + "/")
            else:
                zf.write(path, arcname)


def pack_tar(root: Path, dst: Path, fmt: str, level: int | None) -> None:
    mode = TAR_MODES[fmt]
    kwargs: dict[str, Any] = {}
    if mode in {"gz", "bz2"} and level is not None:
        kwargs["compresslevel"] = max(level, 1) if mode == "bz2" else level
    elif mode == "xz" and level is not None:
        kwargs["preset"] = level
    kwargs["format"] = tarfile.PAX_FORMAT
    open_mode: Any = f"w:{mode}" if mode else "w"  # a str the overloads cannot narrow
    with tarfile.open(dst, open_mode, **kwargs) as tf:
        for path in entries_of(root):
            tf.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)


def pack_7z(root: Path, dst: Path, level: int | None, password: str | None) -> None:
    filters = [{"id": py7zr.FILTER_LZMA2, "preset": 7 if level is None else level}]
    if password:
        filters.append({"id": py7zr.FILTER_CRYPTO_AES256_SHA256})
    with py7zr.SevenZipFile(dst, "w", filters=filters, password=password or None) as archive:
        if password:
            archive.set_encrypted_header(True)
        for path in entries_of(root):
            archive.write(path, arcname=path.relative_to(root).as_posix())


def convert_archive(
    src: Path, fmt_in: str, dst: Path, fmt_out: str, work: Path, options: dict[str, Any]
) -> None:
    root = work / "unpacked"
    root.mkdir()
    password = options.get("password")
    if fmt_in == "zip":
        unpack_zip(src, root, password)
    elif fmt_in == "7z":
        unpack_7z(src, root, password)
    else:
        unpack_tar(src, root)
    level = options.get("compression_level")
    if fmt_out == "zip":
        pack_zip(root, dst, level)
    elif fmt_out == "7z":
        pack_7z(root, dst, level, password)
    else:
        pack_tar(root, dst, fmt_out, level)
    shutil.rmtree(root, ignore_errors=True)
