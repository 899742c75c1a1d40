"""`convertd doctor`: what this machine has, what it lacks, and how to fix each problem."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import importlib.util
import json
import shutil
import socket
import subprocess
import urllib.request

from convertd.browser.chromium import find_chromium, network_namespace
from convertd.cli.common import config_of
from convertd.config import Config
from convertd.files import DataDir
from convertd.office.profile import find_soffice, find_uno_python
from convertd.store.engines import open_database
from convertd.store.migrations import SCHEMA_VERSION, SchemaTooNew

APT = "sudo apt-get install -y"
MIN_FREE_BYTES = 1024**3


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # a failed optional check only removes some formats


def _version(argv: list[str], every_line: bool = False) -> str:
    """The first line a tool prints about itself (or, `every_line`, all but a heading)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run ({exc})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    if every_line:
        return ", ".join(line.strip() for line in lines if not line.endswith(":"))[:200]
    return lines[0][:80] if lines else "present"


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="check tools, data dir, database and port",
        description="Check what convertd needs, and say how to fix what is missing.",
        epilog="example: convertd doctor --port 9000",
    )
    doctor.add_argument("--host", help="address serve would bind")
    doctor.add_argument("--port", type=int, help="port serve would bind")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    checks = run_checks(config_of(args))
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for c in checks:
            mark = "ok " if c.ok else ("FAIL" if c.required else "warn")
            print(f"[{mark}] {c.name:16} {c.detail}")
            if not c.ok and c.fix:
                print(f"       fix: {c.fix}")
    return 0 if all(c.ok for c in checks if c.required) else 1


def tool_checks(uno_python: str | None, chromium: str | None = None) -> list[Check]:
    checks: list[Check] = []
    for tool, flag, package, formats in (
        ("ffmpeg", "-version", "ffmpeg", "audio and video"),
        ("ffprobe", "-version", "ffmpeg", "audio and video"),
        ("pdftoppm", "-v", "poppler-utils", "PDF to images"),
        ("qpdf", "--version", "qpdf", "merge and optimize of PDFs"),
        ("ocrmypdf", "--version", "ocrmypdf tesseract-ocr tesseract-ocr-eng", "ocr"),
    ):
        path = shutil.which(tool)
        checks.append(
            Check(
                tool,
                path is not None,
                _version([tool, flag]) if path else f"missing: no {formats}",
                f"{APT} {package}",
                required=False,
            )
        )
    tesseract = shutil.which("tesseract")
    languages = _version([tesseract, "--list-langs"], every_line=True) if tesseract else ""
    checks.append(
        Check(
            "tesseract",
            tesseract is not None,
            f"OCR languages: {languages}" if tesseract else "missing: no ocr",
            f"{APT} tesseract-ocr tesseract-ocr-eng (and tesseract-ocr-LANG for others)",
            required=False,
        )
    )
    browser = find_chromium(chromium)
    playwright = importlib.util.find_spec("playwright") is not None
    checks.append(
        Check(
            "Chromium",
            browser is not None and playwright,
            (_version([browser, "--version"]) if browser else "missing")
            + ("" if playwright else "; playwright missing")
            + (
                "; in a network namespace of its own"
                if network_namespace()
                else "; network: a dead proxy"
            )
            + ("" if browser and playwright else ": no capture-website, no engine chromium"),
            f"{APT} chromium" if not browser else "pip install 'convertd[capture]'",
            required=False,
        )
    )
    soffice = find_soffice()
    checks.append(
        Check(
            "LibreOffice",
            soffice is not None,
            _version([soffice, "--version"])
            if soffice
            else "missing: no documents, ebooks, PDF to Word",
            f"{APT} --no-install-recommends "
            "libreoffice-writer libreoffice-calc libreoffice-impress",
            required=False,
        )
    )
    python = find_uno_python(uno_python) if soffice else None
    checks.append(
        Check(
            "LibreOffice UNO",
            python is not None,
            f"warm instances through {python}"
            if python
            else "missing: documents use a cold soffice per file (slow)",
            f"{APT} python3-uno",
            required=False,
        )
    )
    checks.append(
        Check(
            "setpriv",
            shutil.which("setpriv") is not None,
            "tools die with the daemon"
            if shutil.which("setpriv")
            else "missing: tools may outlive a killed daemon",
            f"{APT} util-linux",
            required=False,
        )
    )
    return checks


def data_checks(config: Config) -> list[Check]:
    checks: list[Check] = []
    data = DataDir.of(config)
    root = data.root
    try:
        root.mkdir(parents=True, exist_ok=True)
        data.write_probe.write_bytes(b"ok")
        data.write_probe.unlink()
        checks.append(Check("data dir", True, f"{root} is writable"))
    except OSError as exc:
        checks.append(
            Check(
                "data dir",
                False,
                f"{root}: {exc.strerror}",
                "choose another with --data-dir, or fix its permissions",
            )
        )
        return checks
    free = shutil.disk_usage(root).free
    checks.append(
        Check(
            "free disk",
            free >= MIN_FREE_BYTES,
            f"{free / 1024**3:.1f} GiB free in {root}",
            "free some space, or move the data dir to a larger disk",
        )
    )

    async def open_db() -> str:
        db = await open_database(data.database)
        try:
            return f"{db.where} (schema {SCHEMA_VERSION})"
        finally:
            await db.close()

    try:
        checks.append(Check("database", True, asyncio.run(open_db())))
    except SchemaTooNew as exc:
        checks.append(Check("database", False, str(exc), "upgrade convertd"))
    except Exception as exc:
        checks.append(
            Check(
                "database",
                False,
                f"{data.database}: {exc}",
                "check the file, or restore it from a backup",
            )
        )
    return checks


def port_check(config: Config) -> Check:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((config.host, config.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                if version := _convertd_at(config.host, config.port):
                    return Check(
                        "port",
                        True,
                        f"{config.host}:{config.port} is served by convertd {version} "
                        "(it is running)",
                    )
                return Check(
                    "port",
                    False,
                    f"{config.host}:{config.port} is in use (convertd already running?)",
                    "stop the other program, or pick another with --port",
                )
            return Check(
                "port",
                False,
                f"{config.host}:{config.port}: {exc.strerror}",
                "pick another --host or --port",
            )
    return Check("port", True, f"{config.host}:{config.port} is free")


def _convertd_at(host: str, port: int) -> str | None:
    """The version of the convertd answering at host:port, if that is what answers there."""
    shown = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{shown}:{port}/v1/", timeout=3) as resp:
            info = json.loads(resp.read(64 * 1024))
    except (OSError, ValueError):
        return None
    if isinstance(info, dict) and info.get("name") == "convertd":
        return str(info.get("version", "?"))
    return None


def run_checks(config: Config) -> list[Check]:
    return [
        *tool_checks(config.uno_python, config.chromium),
        *data_checks(config),
        port_check(config),
    ]
