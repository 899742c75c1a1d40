"""Run an external program that cannot outlive its job, at a priority below the daemon's.

Every child gets its own session (so its whole process group can be signalled), no shell, an
argument list, and no stdin beyond what the caller hands it (then closed). On timeout,
cancellation or shutdown the group gets SIGTERM, a short grace, then SIGKILL, and the child is
always reaped.

On a small box every core is busy while files convert; the API must still answer at once. So
every tool convertd starts (FFmpeg, LibreOffice, pdftoppm) runs under `nice`, and the daemon's
event loop, at the normal priority, wins the CPU whenever it has work. The daemon's own threads
(Pillow, pypdf) are left at the normal priority: measured here, lowering them only made
in-process conversions slower, and they share the event loop's interpreter lock anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from convertd.errors import ConversionError

logger = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 2.0
STDERR_KEEP_BYTES = 64 * 1024
MAX_LINE_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: str


class ProcessTimeout(ConversionError):
    pass


SETPRIV = shutil.which("setpriv")
NICE = shutil.which("nice")
NICENESS = 19


def niced(argv: Sequence[str]) -> list[str]:
    """argv run under `nice`, when the system has it."""
    if NICE is None:
        return list(argv)
    return [NICE, "-n", str(NICENESS), *argv]


def tied_to_parent(argv: Sequence[str], sig: str = "KILL") -> list[str]:
    """argv run so that the child gets `sig` if convertd itself dies (even by SIGKILL): no tool
    keeps running, or writing into a job directory, after the daemon is gone."""
    if SETPRIV is None:
        return list(argv)
    return [SETPRIV, "--pdeathsig", sig, "--", *argv]


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def terminate(proc: asyncio.subprocess.Process) -> None:
    """TERM the child's whole group, then KILL what is left; always reap the child."""
    if proc.returncode is None:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(KILL_GRACE_SECONDS):
                await proc.wait()
        except TimeoutError:
            pass
    # Grandchildren may linger in the group after the leader exits: KILL them all.
    kill_group(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        await proc.wait()


async def _drain(
    stream: asyncio.StreamReader | None,
    keep: int,
    on_line: Callable[[str], Awaitable[None]] | None = None,
) -> bytes:
    """Read a pipe to its end, keeping only the last `keep` bytes (a chatty tool can't eat RAM);
    with `on_line`, each line (split at newlines only, cut at MAX_LINE_BYTES) is handed over."""
    if stream is None:
        return b""
    kept = bytearray()
    line = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > keep:
            del kept[: len(kept) - keep]
        if on_line is None:
            continue
        *ends, rest = chunk.split(b"\n")
        for part in ends:
            line += part[: MAX_LINE_BYTES - len(line)]
            await on_line(line.decode("utf-8", "replace").rstrip("\r"))
            line.clear()
        line += rest[: MAX_LINE_BYTES - len(line)]
    if line and on_line is not None:
        await on_line(line.decode("utf-8", "replace").rstrip("\r"))
    return bytes(kept)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    """Write `data` to the child's stdin and close it; a child that exits without reading it
    all is judged by its exit status and stderr, not by the broken pipe."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    proc.stdin.close()


async def run(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], Awaitable[None]] | None = None,
    on_stderr_line: Callable[[str], Awaitable[None]] | None = None,
    capture_stdout: bool = False,
    name: str | None = None,
    stdin: bytes | None = None,
) -> Result:
    """Run argv to completion under `timeout` seconds.

    With `on_line`, stdout is read line by line and each line handed over (progress reports);
    with `capture_stdout`, it is returned; otherwise it is discarded. With `on_stderr_line`,
    stderr is handed over line by line too (what a tool says of its input); its end is kept.
    `stdin`, if given, is written to the child's standard input, which is then closed.
    """
    args = [str(a) for a in argv]
    label = name or Path(args[0]).name
    proc = await asyncio.create_subprocess_exec(
        *tied_to_parent(niced(args)),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE
        if (on_line or capture_stdout)
        else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    stdout = b""

    async def read_stdout() -> bytes:
        assert proc.stdout is not None
        if on_line is None:
            return await _drain(proc.stdout, 512 * 1024 * 1024)
        while line := await proc.stdout.readline():
            await on_line(line.decode("utf-8", "replace").strip())
        return b""

    try:
        async with asyncio.timeout(timeout):
            if stdin is not None:
                await _feed(proc, stdin)
            readers = [
                asyncio.ensure_future(_drain(proc.stderr, STDERR_KEEP_BYTES, on_stderr_line))
            ]
            if on_line or capture_stdout:
                readers.append(asyncio.ensure_future(read_stdout()))
            try:
                results = await asyncio.gather(*readers)
                await proc.wait()
            finally:
                for reader in readers:
                    reader.cancel()
    except TimeoutError:
        await terminate(proc)
        raise ProcessTimeout(f"{label} took longer than {timeout:.0f} s and was stopped") from None
    except BaseException:
        await terminate(proc)
        raise
    finally:
        # The leader has exited; make sure nothing it spawned stays behind.
        kill_group(proc.pid, signal.SIGKILL)
    stderr = results[0].decode("utf-8", "replace")
    if capture_stdout:
        stdout = results[1]
    assert proc.returncode is not None
    return Result(proc.returncode, stdout, stderr)


def last_line(stderr: str, default: str) -> str:
    """The last non-empty line of stderr, or `default`."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else default


def last_error_line(stderr: str, default: str) -> str:
    """The most telling line of a tool's stderr, for a one-line human error."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        lower = line.lower()
        if any(word in lower for word in ("error", "invalid", "could not", "unable", "failed")):
            return line[:300]
    return lines[-1][:300] if lines else default
