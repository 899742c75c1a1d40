"""A task's files: where they come from (a conversion's result, an input's files) and how they
are described in its result."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from convertd.files import DataDir, extension_of, safe_filename, stem_of
from convertd.store import tasks


def take_conversion_result(
    data: DataDir, task: tasks.Task, job_id: str, result_name: str
) -> list[dict[str, Any]]:
    """Blocking: the queued job's output becomes the task's files (several outputs arrive as
    a ZIP convertd made; they are unpacked, as CloudConvert returns them one by one, and named
    `<filename's stem>-<n>.<ext>` when the task gave a filename)."""
    source = data.result_file(job_id, result_name)
    staging = data.fresh_task_staging(task.id)
    wanted = task.payload.get("output_format", "")
    filename = task.payload.get("filename")
    if extension_of(result_name) == "zip" and wanted != "zip":
        with zipfile.ZipFile(source) as zf:
            for n, info in enumerate(zf.infolist(), start=1):
                name = safe_filename(info.filename)
                if filename:
                    name = safe_filename(f"{stem_of(filename)}-{n}.{extension_of(name)}")
                with zf.open(info) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    else:
        name = filename or result_name
        link_or_copy(source, staging / safe_filename(name))
    data.publish_task_files(task.id, staging)
    return describe(data.task_dir(task.id))


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def describe(directory: Path) -> list[dict[str, Any]]:
    return [
        {"filename": path.name, "size": path.stat().st_size}
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.name.startswith(".")
    ]
