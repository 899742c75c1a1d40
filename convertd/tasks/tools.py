"""What the operations the engine runs itself share: running a tool under procs.run's
hardening with its failures in the task's terms, and the part of a task's result beyond its
files (metadata's JSON, optimize's sizes), left by the operation in a hidden file beside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convertd import procs
from convertd.converters.ffmpeg import input_args
from convertd.tasks.operations import TaskFailed

RESULT = ".result.json"  # hidden: describe() lists no dot files


async def run_tool(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    name: str,
    problem: str | None = None,
    made: Path | None = None,
    default: str = "",
    capture_stdout: bool = False,
) -> procs.Result:
    """Run a tool to its end; TaskFailed TIMEOUT at the timeout. With `problem`, a tool that
    fails (or does not make `made`) fails the task: INVALID_INPUT, `problem: <its last error
    line, or default>`."""
    try:
        result = await procs.run(argv, timeout=timeout, name=name, capture_stdout=capture_stdout)
    except procs.ProcessTimeout as exc:
        raise TaskFailed("TIMEOUT", str(exc)) from None
    if problem is not None and (result.returncode != 0 or (made is not None and not made.exists())):
        reason = procs.last_error_line(result.stderr, default)
        # Where the files lie on this server is nobody's business: their names say enough.
        for arg in argv:
            if isinstance(arg, Path):
                reason = reason.replace(str(arg), arg.name)
        raise TaskFailed("INVALID_INPUT", f"{problem}: {reason}")
    return result


async def ffprobe(
    path: Path, demuxers: tuple[str, ...], what: Sequence[str], timeout: float
) -> dict[str, Any] | None:
    """ffprobe's JSON about `path` (`what`: its -show_* arguments), read only through the
    demuxers allowed (as conversions read media); None if it could not read the file."""
    argv = ["ffprobe", "-v", "error", *input_args(path, demuxers), *what, "-of", "json"]
    result = await run_tool(argv, timeout=timeout, name="ffprobe", capture_stdout=True)
    try:
        data = json.loads(result.stdout or b"{}")
    except ValueError:
        return None
    return data if result.returncode == 0 and isinstance(data, dict) else None


def keep_result(staging: Path, fields: dict[str, Any]) -> None:
    """Blocking: `fields` go into the task's result beside its files."""
    (staging / RESULT).write_text(json.dumps(fields))


def result_beyond_files(task_dir: Path) -> dict[str, Any]:
    """Blocking: what a finished task's result carries besides its files."""
    extra = task_dir / RESULT
    return json.loads(extra.read_text("utf-8")) if extra.exists() else {}
