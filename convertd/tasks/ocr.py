"""The ocr operation (convertd's own; CloudConvert hides OCR in convert options): a scanned
PDF or an image becomes a searchable PDF, its text in a layer under the picture, or plain text.

OCRmyPDF does it, with Tesseract: pages that already have text are kept as they are
(`--skip-text`), images larger than the pixel limit are refused, and everything runs under
procs.run (niced, its own process group with every child, killed at the timeout), with its
temporary files in the task's staging directory and one Tesseract thread.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from convertd import procs
from convertd.converters.sniff import sniff_file
from convertd.files import safe_filename, stem_of
from convertd.tasks.operations import TaskFailed
from convertd.tasks.parameters import LANGUAGE
from convertd.tasks.tools import run_tool

OCRMYPDF = "ocrmypdf"
IMAGES = ("jpg", "png", "tiff", "bmp", "gif", "webp")
# OCRmyPDF's exit codes that say more than its last line (an exception's class name).
EXIT_CODES = {
    2: "it is not a PDF or image OCRmyPDF can read (damaged, or not what its name says)",
    6: "it already has text",
    8: "it is encrypted; decrypt it first",
}


def available() -> bool:
    return shutil.which(OCRMYPDF) is not None and shutil.which("tesseract") is not None


async def installed_languages() -> set[str]:
    result = await procs.run(["tesseract", "--list-langs"], timeout=30, capture_stdout=True)
    lines = result.stdout.decode("utf-8", "replace").splitlines()
    return {line.strip() for line in lines if LANGUAGE.match(line.strip())}


async def ocr(
    payload: dict[str, Any], paths: list[Path], staging: Path, timeout: float, max_pixels: int
) -> None:
    """The input's one file, recognised, in `staging`, as pdf or txt."""
    if len(paths) != 1:
        raise TaskFailed("INVALID_INPUT", f"ocr reads one file; its input has {len(paths)}")
    if not available():
        missing = "ocr needs ocrmypdf and tesseract, which are not installed on this server"
        raise TaskFailed("ENGINE_MISSING", missing)
    source = paths[0]
    languages = payload.get("languages") or ["eng"]
    if missing_languages := set(languages) - await installed_languages():
        raise TaskFailed(
            "INVALID_OPTIONS",
            f"No Tesseract data for {', '.join(sorted(missing_languages))} here; the admin "
            "installs it with the package "
            + ", ".join(
                f"tesseract-ocr-{lang.replace('_', '-')}" for lang in sorted(missing_languages)
            ),
        )
    kind = await asyncio.to_thread(sniff_file, source)
    if kind != "pdf" and kind not in IMAGES:
        raise TaskFailed(
            "INVALID_INPUT",
            f"ocr reads scanned PDFs and images; {source.name} is neither. "
            "Convert it to pdf in a convert task first.",
        )
    fmt = payload.get("output_format", "pdf")
    name = safe_filename(payload.get("filename") or f"{stem_of(source.name)}.{fmt}")
    out, text = staging / ".ocr.pdf", staging / ".ocr.txt"
    argv: list[Any] = [
        OCRMYPDF,
        "--skip-text",
        "--output-type",
        "pdf",
        "--jobs",
        "1",
        "--language",
        "+".join(languages),
        "--max-image-mpixels",
        str(max(1, max_pixels // 1_000_000)),
        "--sidecar",
        text,
    ]
    if kind != "pdf":
        argv += ["--image-dpi", "300"]  # used only when the image does not say its own
    # Its temporary files in the staging directory, Tesseract on one thread (env(1) sets them
    # on top of the daemon's environment).
    settings = ["env", f"TMPDIR={staging}", "OMP_THREAD_LIMIT=1"]
    result = await run_tool([*settings, *argv, source, out], timeout=timeout, name="ocrmypdf")
    if result.returncode != 0 or not out.exists():
        problem = EXIT_CODES.get(result.returncode)
        if problem is None:
            problem = procs.last_error_line(result.stderr, "OCRmyPDF could not read it")
            problem = problem.replace(str(source), source.name)
        raise TaskFailed(
            "INVALID_INPUT", f"The text of {source.name} could not be recognised: {problem}"
        )
    keep, drop = (out, text) if fmt == "pdf" else (text, out)
    await asyncio.to_thread(keep.rename, staging / name)
    drop.unlink(missing_ok=True)
