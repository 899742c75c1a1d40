"""What the operations the engine runs itself share: running a tool under procs.run's
hardening with its failures in the task's terms, and the part of a task's result beyond its
files (metadata's JSON, optimize's sizes), left by the operation in a hidden file beside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convertd import procs
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
        raise TaskFailed("INVALID_INPUT", f"{problem}: {reason}")
    return result


def keep_result(staging: Path, fields: dict[str, Any]) -> None:
    """Blocking: `fields` go into the task's result beside its files."""
    (staging / RESULT).write_text(json.dumps(fields))


def result_beyond_files(task_dir: Path) -> dict[str, Any]:
    """Blocking: what a finished task's result carries besides its files."""
    extra = task_dir / RESULT
    return json.loads(extra.read_text("utf-8")) if extra.exists() else {}
