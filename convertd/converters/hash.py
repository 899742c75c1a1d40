"""Checksums of any file, streamed: the output is a text file holding the hex digest."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Protocol

from convertd.converters.base import ANY_FORMAT, Converter, Task

CHUNK = 1024 * 1024


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def _new_hasher(algorithm: str) -> _Hasher:
    if algorithm == "crc32":
        return _Crc32()
    return hashlib.new(algorithm)


def hex_digest(path: Path, algorithm: str) -> str:
    hasher = _new_hasher(algorithm)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


class HashConverter(Converter):
    filetype = "hash"
    engine_name = "hashlib"
    input_formats = (ANY_FORMAT,)
    output_formats = ("md5", "sha1", "sha256", "sha512", "crc32", "blake2b")
    empty_inputs = (ANY_FORMAT,)

    async def convert(self, task: Task) -> list[Path]:
        out = task.output_path()
        await task.off_loop(_write_digest, task.input_path, task.output_format, out)
        return [out]


def _write_digest(path: Path, algorithm: str, out: Path) -> None:
    out.write_text(hex_digest(path, algorithm) + "\n", encoding="ascii")
