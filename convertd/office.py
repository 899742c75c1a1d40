"""Warm LibreOffice instances: a private hardened profile each, health, restart, recycling.

Each instance is a helper process (`office_helper.py`, run by the Python that has `uno`) that
owns one soffice. Both live in one process group, so a hang, a crash or shutdown ends them
together. An instance serves one conversion at a time; the pool hands out idle instances, so
several documents convert in parallel, one per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from convertd import procs
from convertd.errors import ConversionError
from convertd.priority import niced

logger = logging.getLogger(__name__)

HELPER = Path(__file__).with_name("office_helper.py")
START_TIMEOUT = 90.0
# Recycle an instance after this many documents: LibreOffice's memory only grows.
DEFAULT_RECYCLE_AFTER = 200
UNO_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")

# A profile that never runs macros, never follows links out of a document, never updates
# links or fields on load, never recalculates formulas such as WEBSERVICE on load, and reaches
# no network: every fetch goes to a proxy on the discard port of loopback, where nothing listens.
PROFILE_SETTINGS = [
    ("/org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel", "int", "3"),
    (
        "/org.openoffice.Office.Common/Security/Scripting",
        "DisableMacrosExecution",
        "boolean",
        "true",
    ),
    (
        "/org.openoffice.Office.Common/Security/Scripting",
        "BlockUntrustedRefererLinks",
        "boolean",
        "true",
    ),
    ("/org.openoffice.Office.Common/Security/Scripting", "CheckDocumentEvents", "boolean", "true"),
    ("/org.openoffice.Office.Writer/Content/Update", "Link", "int", "0"),  # never
    ("/org.openoffice.Office.Writer/Content/Update", "Field", "boolean", "false"),
    ("/org.openoffice.Office.Writer/Content/Update", "Chart", "boolean", "false"),
    ("/org.openoffice.Office.Calc/Content/Update", "Link", "int", "1"),  # never
    ("/org.openoffice.Office.Calc/Formula/Load", "OOXMLRecalcMode", "int", "1"),  # never
    ("/org.openoffice.Office.Calc/Formula/Load", "ODFRecalcMode", "int", "1"),  # never
    ("/org.openoffice.Inet/Settings", "ooInetProxyType", "int", "2"),  # manual
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyName", "string", "127.0.0.1"),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyPort", "int", "9"),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyName", "string", "127.0.0.1"),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyPort", "int", "9"),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyName", "string", "127.0.0.1"),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyPort", "int", "9"),
    ("/org.openoffice.Inet/Settings", "ooInetNoProxy", "string", ""),
    ("/org.openoffice.Office.Common/Misc", "UseOpenCL", "boolean", "false"),
    ("/org.openoffice.Office.Common/Misc", "FirstRun", "boolean", "false"),
    ("/org.openoffice.Office.Common/Save/Document", "WarnAlienFormat", "boolean", "false"),
    ("/org.openoffice.Office.Common/Save/Document", "CreateBackup", "boolean", "false"),
    ("/org.openoffice.Office.Recovery/AutoSave", "Enabled", "boolean", "false"),
    ("/org.openoffice.Office.Recovery/RecoveryInfo", "Enabled", "boolean", "false"),
]


def profile_xml() -> str:
    items = "\n".join(
        f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse">'
        f"<value>{value}</value></prop></item>"
        for path, name, _kind, value in PROFILE_SETTINGS
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"{items}\n</oor:items>\n"
    )


def write_profile(directory: Path) -> None:
    """A fresh profile, written before first start, so LibreOffice never runs unhardened."""
    shutil.rmtree(directory, ignore_errors=True)
    user = directory / "user"
    user.mkdir(parents=True, mode=0o700)
    (user / "registrymodifications.xcu").write_text(profile_xml(), encoding="utf-8")


def find_uno_python() -> str | None:
    """An interpreter that can `import uno` (Debian's python3 with python3-uno)."""
    candidates = [os.environ.get("CONVERTD_UNO_PYTHON", ""), *UNO_PYTHONS]
    for candidate in dict.fromkeys(c for c in candidates if c):
        if not shutil.which(candidate):
            continue
        try:
            check = subprocess.run(
                [candidate, "-c", "import uno"], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if check.returncode == 0:
            return candidate
    return None


def find_soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def office_binary(soffice: str) -> str:
    """soffice.bin beside the soffice launcher, when there is one: the helper runs it directly
    so that it is the helper's own child (see office_helper.start_office)."""
    real = Path(soffice).resolve()
    binary = real.with_name("soffice.bin")
    return str(binary) if binary.exists() else str(real)


@dataclasses.dataclass
class Request:
    input: Path
    output: Path
    filter: str
    filter_options: str | None = None
    filter_data: dict[str, Any] | None = None
    import_filter: str | None = None
    import_options: str | None = None
    families: tuple[str, ...] | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "input": str(self.input),
                "output": str(self.output),
                "filter": self.filter,
                "filter_options": self.filter_options,
                "filter_data": self.filter_data,
                "import_filter": self.import_filter,
                "import_options": self.import_options,
                "families": list(self.families) if self.families else None,
            }
        )


class OfficeCrashed(ConversionError):
    pass


class Instance:
    def __init__(self, number: int, root: Path, python: str, soffice: str, recycle_after: int):
        self.number = number
        self.profile = root / f"profile-{number}"
        self.python = python
        self.soffice = soffice
        self.recycle_after = recycle_after
        self.proc: asyncio.subprocess.Process | None = None
        self.office_pid: int | None = None
        self.served = 0
        # One conversation with the helper at a time: warm-up and a first job may race for it.
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

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
            *procs.tied_to_parent(niced(argv)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT):
                hello = await self._read()
        except (TimeoutError, OfficeCrashed):
            await self.stop()
            raise ConversionError("LibreOffice did not start") from None
        if not hello.get("ready"):
            await self.stop()
            raise ConversionError(str(hello.get("error", "LibreOffice did not start")))
        self.office_pid = hello.get("office_pid")
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

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise OfficeCrashed("LibreOffice stopped unexpectedly while converting this document")
        result: dict[str, Any] = json.loads(line)
        return result

    async def ensure_started(self) -> None:
        async with self._lock:
            if not self.alive:
                await self.start()

    async def convert(self, request: Request, timeout: float) -> dict[str, Any]:
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
                await self.start()
            return await self._convert(request, timeout)
        finally:
            self._lock.release()

    async def _convert(self, request: Request, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            async with asyncio.timeout(timeout):
                self.proc.stdin.write(request.to_json().encode() + b"\n")
                await self.proc.stdin.drain()
                result = await self._read()
        except TimeoutError:
            logger.warning("office instance %d hung; restarting it", self.number)
            await self.kill()
            raise ConversionError(
                f"LibreOffice took longer than {timeout:.0f} s on this document and was stopped"
            ) from None
        except (OfficeCrashed, ConnectionError):
            logger.warning("office instance %d died; restarting it", self.number)
            await self.kill()
            raise OfficeCrashed(
                "LibreOffice stopped unexpectedly while converting this document"
            ) from None
        except BaseException:
            # Cancelled mid-conversion (shutdown): the instance's state is unknown.
            procs.kill_group(self.proc.pid, signal.SIGKILL)
            self.proc = self.office_pid = None
            raise
        if result.get("kind") == "crash":
            await self.kill()
            raise OfficeCrashed("LibreOffice stopped unexpectedly while converting this document")
        self.served += 1
        if self.served >= self.recycle_after:
            logger.info("office instance %d recycled after %d documents", self.number, self.served)
            await self.stop()
        return result


class OfficePool:
    def __init__(self, root: Path, size: int, recycle_after: int = DEFAULT_RECYCLE_AFTER) -> None:
        self.root = root
        self.size = max(1, size)
        self.recycle_after = recycle_after
        self.python: str | None = None
        self.soffice: str | None = None
        self._detected = False
        self._idle: asyncio.Queue[Instance] = asyncio.Queue()
        self._instances: list[Instance] = []

    def detect(self) -> None:
        """Find soffice and a Python with uno (blocking: call it from a thread)."""
        if not self._detected:
            self.soffice = find_soffice()
            self.python = find_uno_python() if self.soffice else None
            self._detected = True

    @property
    def uno_ready(self) -> bool:
        """Warm instances are possible; without uno, documents go through a cold soffice."""
        self.detect()
        return self.python is not None and self.soffice is not None

    def missing(self) -> list[str]:
        self.detect()
        return [] if self.soffice else ["soffice (LibreOffice)"]

    def start(self) -> None:
        if not self.uno_ready or self._instances:
            return
        assert self.python is not None and self.soffice is not None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for n in range(self.size):
            instance = Instance(n, self.root, self.python, self.soffice, self.recycle_after)
            self._instances.append(instance)
            self._idle.put_nowait(instance)

    async def warm_up(self) -> None:
        """Start every instance now, so the first documents do not wait for LibreOffice."""
        started = await asyncio.gather(
            *(i.ensure_started() for i in self._instances), return_exceptions=True
        )
        for outcome in started:
            if isinstance(outcome, BaseException):
                logger.warning("office warm-up: %s", outcome)

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._instances), return_exceptions=True)

    @contextlib.asynccontextmanager
    async def instance(self) -> AsyncIterator[Instance]:
        instance = await self._idle.get()
        try:
            yield instance
        finally:
            self._idle.put_nowait(instance)

    async def convert(self, request: Request, timeout: float) -> dict[str, Any]:
        """Convert on an idle instance; a crash is retried once on a fresh one."""
        for attempt in (1, 2):
            async with self.instance() as instance:
                try:
                    return await instance.convert(request, timeout)
                except OfficeCrashed:
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def office_pids(self) -> list[int]:
        return [i.office_pid for i in self._instances if i.office_pid]
