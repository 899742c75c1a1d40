"""A LibreOffice instance's private, hardened profile, and where LibreOffice and `uno` are found."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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
    # No .~lock.NAME# beside a document: every job has a folder of its own, so a lock guards
    # nothing, and one left by a killed soffice made the retry's store of the same output fail
    # at once ("could not write this document", I/O abort 27: no one to ask about the lock).
    ("/org.openoffice.Office.Common/Misc", "UseLocking", "boolean", "false"),
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


def sweep_profiles(root: Path) -> None:
    """Remove the profiles under `root` (a data dir's office/) that no running process holds,
    before a daemon's instances start: `profile-N` of a daemon that did not stop cleanly (this
    one owns them now; its soffices died with it), and `cli-PID-*` of a `convertd convert`
    whose process is gone. A live CLI's folder is left alone."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in root.iterdir():
        if entry.name.startswith("cli-"):
            pid = entry.name.split("-")[1]
            if not pid.isdigit() or _running(int(pid)):
                continue
        elif not entry.name.startswith("profile-"):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def find_uno_python(configured: str | None = None) -> str | None:
    """An interpreter that can `import uno` (Debian's python3 with python3-uno); the configured
    one (`uno_python`) is tried first."""
    candidates = [configured or "", *UNO_PYTHONS]
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
    so that it is the helper's own child (see helper.start_office)."""
    real = Path(soffice).resolve()
    binary = real.with_name("soffice.bin")
    return str(binary) if binary.exists() else str(real)
