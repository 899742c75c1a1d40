"""The optimize operation: the same document or picture, smaller, without visible loss.

- PDF: qpdf rewrites it losslessly (object streams, streams recompressed at the highest
  level, unreferenced resources dropped); the `web` profile also linearizes it (fast web view).
- JPEG: re-encoded with its own quantization tables (`quality="keep"`), optimized Huffman
  tables, progressive for `web`; EXIF and the colour profile are kept, except with `max`.
- PNG: recompressed losslessly (text chunks are not carried over).

The result is never larger than the input: if it would be, the input is returned as it is, and
`result.optimize` says so (`input_size`, `output_size`, `smaller`).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from convertd.converters.sniff import sniff_file
from convertd.files import safe_filename
from convertd.tasks.operations import TaskFailed
from convertd.tasks.tools import keep_result, run_tool


async def optimize(
    payload: dict[str, Any], paths: list[Path], staging: Path, timeout: float
) -> None:
    """The input's one file, made smaller, in `staging`; its result says by how much."""
    if len(paths) != 1:
        raise TaskFailed("INVALID_INPUT", f"optimize takes one file; its input has {len(paths)}")
    source = paths[0]
    profile = payload.get("profile", "web")
    name = safe_filename(payload.get("filename") or source.name)
    out = staging / ".optimized"
    kind = await asyncio.to_thread(sniff_file, source)
    if kind == "pdf":
        await _pdf(source, out, profile, timeout)
    elif kind in ("jpg", "png"):
        await asyncio.to_thread(_picture, source, out, kind, profile)
    else:
        raise TaskFailed(
            "INVALID_INPUT",
            f"optimize makes PDFs, JPEGs and PNGs smaller; {source.name} is none of them.",
        )
    before, after = source.stat().st_size, out.stat().st_size
    if after >= before:
        await asyncio.to_thread(shutil.copyfile, source, staging / name)
        out.unlink()
    else:
        await asyncio.to_thread(out.rename, staging / name)
    report = {"input_size": before, "output_size": min(after, before), "smaller": after < before}
    await asyncio.to_thread(keep_result, staging, {"optimize": report})


async def _pdf(source: Path, out: Path, profile: str, timeout: float) -> None:
    argv: list[Any] = [
        "qpdf",
        "--warning-exit-0",
        "--object-streams=generate",
        "--compress-streams=y",
        "--recompress-flate",
        "--compression-level=9",
        "--remove-unreferenced-resources=yes",
    ]
    if profile == "web":
        argv.append("--linearize")
    await run_tool(
        [*argv, "--", source, out],
        timeout=timeout,
        name="qpdf",
        problem="The PDF could not be optimized",
        made=out,
        default="qpdf could not read it",
    )


def _picture(source: Path, out: Path, kind: str, profile: str) -> None:
    try:
        with Image.open(source) as im:
            im.load()
            keep = profile != "max"
            extra: dict[str, Any] = {}
            if keep and im.info.get("icc_profile"):
                extra["icc_profile"] = im.info["icc_profile"]
            if kind == "jpg":
                if keep and im.info.get("exif"):
                    extra["exif"] = im.info["exif"]
                im.save(
                    out,
                    "JPEG",
                    quality="keep",
                    optimize=True,
                    progressive=profile == "web",
                    subsampling="keep",
                    **extra,
                )
            else:
                im.save(out, "PNG", optimize=True, **extra)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TaskFailed("INVALID_INPUT", f"{source.name} could not be read: {exc}") from None
