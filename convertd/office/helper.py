"""The UNO side of one warm LibreOffice instance. Runs under the Python that has `uno`.

This file is executed as a script by the system interpreter (Debian's python3 with python3-uno),
not imported by the daemon: it must use nothing outside the standard library and `uno`.

It starts soffice with a private, hardened profile, connects over a named pipe, and then serves
one JSON request per stdin line, answering one JSON line on stdout:

    {"input": PATH, "output": PATH, "filter": NAME, "filter_options": STR?, "filter_data": {}?,
     "import_filter": NAME?, "families": [...]?, "password": STR?}
    -> {"ok": true, "family": "text"} | {"ok": false, "kind": "input"|"crash", "error": STR}

It exits when stdin closes or when soffice dies under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import uno  # type: ignore[import-not-found]
from com.sun.star.beans import PropertyValue  # type: ignore[import-not-found]

# MacroExecutionMode.NEVER_EXECUTE and UpdateDocMode.NO_UPDATE.
NEVER_EXECUTE = 0
NO_UPDATE = 0
CONNECT_TIMEOUT = 60.0
# soffice.bin's exit code when a fresh profile needs a restart (oosplash would restart it).
RESTART_REQUESTED = 81

FAMILIES = {
    "com.sun.star.sheet.SpreadsheetDocument": "sheet",
    "com.sun.star.presentation.PresentationDocument": "slides",
    "com.sun.star.drawing.DrawingDocument": "drawing",
    "com.sun.star.text.TextDocument": "text",
}


def props(**values: Any) -> tuple[Any, ...]:
    return tuple(PropertyValue(Name=k, Value=v) for k, v in values.items())


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def start_office(soffice: str, profile: str, pipe: str) -> subprocess.Popen[bytes]:
    # soffice.bin is started directly (not through the soffice script and oosplash), as our own
    # child, with a parent-death signal: if this helper dies, even by SIGKILL, so does soffice.
    tie = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
    return subprocess.Popen(
        [
            *tie,
            soffice,
            "--headless",
            "--invisible",
            "--nocrashreport",
            "--nodefault",
            "--nologo",
            "--nofirststartwizard",
            "--norestore",
            "--nolockcheck",
            "-env:UserInstallation=" + uno.systemPathToFileUrl(profile),
            f"--accept=pipe,name={pipe};urp;StarOffice.ComponentContext",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def connect(pipe: str, office: subprocess.Popen[bytes]) -> Any:
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local
    )
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            context = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            return context.ServiceManager.createInstanceWithContext(
                "com.sun.star.frame.Desktop", context
            )
        except Exception:
            if office.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def office_alive(desktop: Any, office: subprocess.Popen[bytes]) -> bool:
    """Whether soffice still answers. A killed soffice breaks the bridge before the kernel has
    reaped it, so poll() alone can still say "running": a cheap call over the bridge settles it.
    """
    if office.poll() is not None:
        return False
    try:
        desktop.getFrames()
    except Exception:  # DisposedException, RuntimeException: the bridge is gone
        return False
    return True


def family_of(document: Any) -> str:
    for service, family in FAMILIES.items():
        if document.supportsService(service):
            return family
    return "other"


def convert(
    desktop: Any, office: subprocess.Popen[bytes], request: dict[str, Any], opened: list[Any]
) -> dict[str, Any]:
    """Convert one document; the loaded document is left in `opened` for the caller to close
    after it has replied (closing takes time the client need not wait for)."""
    load = dict(
        Hidden=True,
        ReadOnly=True,
        MacroExecutionMode=NEVER_EXECUTE,
        UpdateDocMode=NO_UPDATE,
    )
    # A Password only when one was given: headless, with no interaction handler, an encrypted
    # document without one just fails to load. (An empty Password marks the document as
    # encrypted, and ODF export fails.)
    if request.get("password"):
        load["Password"] = request["password"]
    if request.get("import_filter"):
        load["FilterName"] = request["import_filter"]
    if request.get("import_options"):
        load["FilterOptions"] = request["import_options"]
    url = uno.systemPathToFileUrl(request["input"])
    try:
        document = desktop.loadComponentFromURL(url, "_blank", 0, props(**load))
    except Exception:  # UNO raises IllegalArgumentException, IOException, ...
        document = None
    if document is None and not office_alive(desktop, office):
        raise RuntimeError("soffice is gone")
    if document is None:
        return {
            "ok": False,
            "kind": "input",
            "error": "LibreOffice could not open it (damaged, password-protected, or not a "
            "document)",
        }
    opened.append(document)
    family = family_of(document)
    allowed = request.get("families")
    if allowed and family not in allowed:
        return {
            "ok": False,
            "kind": "family",
            "family": family,
            "error": f"the input is a {family} document",
        }
    store = dict(FilterName=request["filter"], Overwrite=True)
    if request.get("filter_options"):
        store["FilterOptions"] = request["filter_options"]
    if request.get("filter_data"):
        data = tuple(PropertyValue(Name=k, Value=v) for k, v in request["filter_data"].items())
        store["FilterData"] = uno.Any("[]com.sun.star.beans.PropertyValue", data)
    # uno.invoke with explicit Any types: the nested FilterData sequence is lost otherwise.
    store_props = uno.Any("[]com.sun.star.beans.PropertyValue", props(**store))
    out_url = uno.systemPathToFileUrl(request["output"])
    try:
        uno.invoke(document, "storeToURL", (out_url, store_props))
    except Exception:
        if not office_alive(desktop, office):
            raise
        return {
            "ok": False,
            "kind": "input",
            "error": "LibreOffice could not write this document in the asked format",
        }
    return {"ok": True, "family": family}


def start_and_connect(soffice: str, profile: str, pipe: str) -> tuple[Any, Any]:
    for _ in range(3):
        office = start_office(soffice, profile, pipe)
        try:
            return office, connect(pipe, office)
        except Exception:
            if office.poll() == RESTART_REQUESTED:
                continue
            office.kill()
            raise
    raise RuntimeError("soffice kept asking for a restart")


def prime(desktop: Any, profile: str) -> None:
    """Write an empty Writer document as DOCX, read it back and export it as PDF, so the first
    real job does not pay for loading Writer and its most used filters."""
    document = desktop.loadComponentFromURL(
        "private:factory/swriter", "_blank", 0, props(Hidden=True)
    )
    docx = uno.systemPathToFileUrl(os.path.join(profile, "prime.docx"))
    try:
        document.storeToURL(docx, props(FilterName="MS Word 2007 XML", Overwrite=True))
    finally:
        with contextlib.suppress(Exception):
            document.close(True)
    # Reading it back warms the DOCX import filter too, the most common input.
    document = desktop.loadComponentFromURL(docx, "_blank", 0, props(Hidden=True))
    try:
        target = uno.systemPathToFileUrl(os.path.join(profile, "prime.pdf"))
        document.storeToURL(target, props(FilterName="writer_pdf_Export", Overwrite=True))
    finally:
        with contextlib.suppress(Exception):
            document.close(True)


def main() -> int:
    soffice, profile, pipe = sys.argv[1:4]
    try:
        office, desktop = start_and_connect(soffice, profile, pipe)
    except Exception as exc:
        reply({"ready": False, "error": f"LibreOffice did not start: {exc}"})
        return 1
    with contextlib.suppress(Exception):
        prime(desktop, profile)
    reply({"ready": True, "office_pid": office.pid, "helper_pid": os.getpid()})
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            opened: list[Any] = []
            try:
                reply(convert(desktop, office, request, opened))
                # Closed after the reply, off the client's path; the next request is read
                # only once it is closed. A failure is told to the daemon's log via stderr.
                for document in opened:
                    try:
                        document.close(True)
                    except Exception as exc:
                        print(f"closing a document failed: {exc!r}", file=sys.stderr, flush=True)
                if office.poll() is not None:
                    return 2
            except Exception as exc:
                # The bridge is gone (soffice crashed or was killed): say so, then exit so
                # the pool starts a fresh instance.
                reply({"ok": False, "kind": "crash", "error": type(exc).__name__})
                return 2
    finally:
        with contextlib.suppress(Exception):
            desktop.terminate()
        try:
            office.wait(timeout=10)
        except subprocess.TimeoutExpired:
            office.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
