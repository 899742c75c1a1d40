"""One warm LibreOffice instance: a helper process (`helper.py`, run by the Python that has
`uno`) that owns one soffice. Both live in one process group, so a hang, a crash or shutdown
ends them together. An instance serves one conversion at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Any

from convertd import procs
from convertd.errors import ConversionError
from convertd.metrics import Metrics
from convertd.office.profile import office_binary, write_profile
from convertd.office.protocol import Hello, Reply, Request

logger = logging.getLogger(__name__)

HELPER = Path(__file__).with_name("helper.py")
START_TIMEOUT = 90.0


class OfficeCrashed(ConversionError):
    pass


class Instance:
    def __init__(
        self,
        number: int,
        root: Path,
        python: str,
        soffice: str,
        metrics: Metrics | None = None,
    ):
        self.number = number
        self.metrics = metrics or Metrics()
        self.profile = root / f"profile-{number}"
        self.python = python
        self.soffice = soffice
        self.proc: asyncio.subprocess.Process | None = None
        self.office_pid: int | None = None
        self.served = 0
        # The pool's bookkeeping: the documents after which it is replaced, whether a document
        # holds it, and whether it has been replaced (it stops once its document is done).
        self.recycle_at = 0
        self.busy = False
        self.retiring = False
        self.served_when_recycled = 0  # its count when its hand-over began: logged at its stop
        # One conversation with the helper at a time: warm-up and a first job may race for it.
        self._lock = asyncio.Lock()
        self._stderr: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def running(self) -> bool:
        """Alive, and its soffice too (one killed from outside shows before a document finds
        it dead): what the metrics count."""
        return self.alive and self._office_running()

    async def start(self) -> None:
        await asyncio.to_thread(write_profile, self.profile)
        # Let LibreOffice do its first-run work on the new profile in a throwaway start: a
        # document opened during that work on the real instance fails to load.
        await procs.run(
            [
                office_binary(self.soffice),
                "--headless",
                "--terminate_after_init",
                "--norestore",
                f"-env:UserInstallation={self.profile.as_uri()}",
            ],
            timeout=START_TIMEOUT,
        )
        pipe = f"convertd-{os.getpid()}-{self.number}-{secrets.token_hex(4)}"
        argv = [self.python, str(HELPER), office_binary(self.soffice), str(self.profile), pipe]
        self.proc = await asyncio.create_subprocess_exec(
            *procs.tied_to_parent(procs.niced(argv)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stderr is not None
        self._stderr = asyncio.create_task(self._log_stderr(self.proc.stderr))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                hello = Hello.from_json(await self._read())
        except (TimeoutError, OfficeCrashed):
            await self.stop()
            raise ConversionError("LibreOffice did not start") from None
        if not hello.ready:
            await self.stop()
            raise ConversionError(hello.error or "LibreOffice did not start")
        self.office_pid = hello.office_pid
        self.served = 0
        logger.info("office instance %d ready (soffice pid %s)", self.number, self.office_pid)

    async def stop(self) -> None:
        """Ask the helper to close LibreOffice, then make sure the whole group is gone."""
        proc, self.proc, self.office_pid = self.proc, None, None
        if proc is None:
            return
        try:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()
        finally:
            # Even when cancelled: a hung soffice must not outlive its instance.
            procs.kill_group(proc.pid, signal.SIGKILL)
        await procs.terminate(proc)

    async def kill(self) -> None:
        """End a hung or crashed instance at once (helper and soffice share one group)."""
        proc, self.proc, self.office_pid = self.proc, None, None
        if proc is not None:
            procs.kill_group(proc.pid, signal.SIGKILL)
            await procs.terminate(proc)

    async def _log_stderr(self, stream: asyncio.StreamReader) -> None:
        """The helper's own complaints (a document that would not close, a traceback), logged:
        soffice's output never reaches it. Ends when the helper does."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line past the reader's 64 KiB limit: dropped, not parsed
                continue
            if not line:
                return
            text = line[:500].decode(errors="replace").rstrip()
            logger.warning("office instance %d helper: %s", self.number, text)

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise OfficeCrashed("LibreOffice stopped unexpectedly while converting this document")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise OfficeCrashed("LibreOffice's helper answered something unreadable") from None
        if not isinstance(message, dict):
            raise OfficeCrashed("LibreOffice's helper answered something unreadable")
        return message

    def _office_running(self) -> bool:
        """Whether soffice still runs (a killed one lingers as a zombie until reaped)."""
        if self.office_pid is None:
            return False
        try:
            with open(f"/proc/{self.office_pid}/stat", encoding="ascii", errors="replace") as fh:
                state = fh.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return os.path.exists(f"/proc/{self.office_pid}") or not os.path.isdir("/proc")
        return state not in {"Z", "X"}

    async def ensure_started(self) -> None:
        async with self._lock:
            if not self.alive:
                await self.start()

    async def convert(self, request: Request, timeout: float) -> Reply:
        try:
            # The wait for the instance counts too: warm-up may hold it while soffice starts.
            async with asyncio.timeout(timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise ConversionError(
                f"LibreOffice was not ready within {timeout:.0f} s; try again"
            ) from None
        try:
            if not self.alive:
                # After a crash, or on first use without a warm-up (office_prewarm off, or no
                # workers: app._office): the one case where a document waits for LibreOffice
                # to start. Logged, so tests can see it is rare.
                logger.info("office instance %d: a document waits for it to start", self.number)
                await self.start()
            return await self._convert(request, timeout)
        finally:
            self._lock.release()

    async def _convert(self, request: Request, timeout: float) -> Reply:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            async with asyncio.timeout(timeout):
                self.proc.stdin.write(request.to_line())
                await self.proc.stdin.drain()
                reply = Reply.from_json(await self._read())
        except TimeoutError:
            logger.warning("office instance %d hung; restarting it", self.number)
            self.metrics.office_restarted("hung")
            await self.kill()
            raise ConversionError(
                f"LibreOffice took longer than {timeout:.0f} s on this document and was stopped"
            ) from None
        except (OfficeCrashed, ConnectionError):
            logger.warning("office instance %d died; restarting it", self.number)
            self.metrics.office_restarted("crashed")
            await self.kill()
            raise OfficeCrashed(
                "LibreOffice stopped unexpectedly while converting this document"
            ) from None
        except BaseException:
            # Cancelled mid-conversion (shutdown): the instance's state is unknown.
            procs.kill_group(self.proc.pid, signal.SIGKILL)
            self.proc = self.office_pid = None
            raise
        # "Could not open it" from an soffice that has just died is a crash, not a bad document.
        if reply.kind == "crash" or (not reply.ok and not self._office_running()):
            self.metrics.office_restarted("crashed")
            await self.kill()
            raise OfficeCrashed("LibreOffice stopped unexpectedly while converting this document")
        self.served += 1
        return reply
