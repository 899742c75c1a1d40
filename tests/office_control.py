"""A control for the macro tests: converts one document to PDF the way a careless converter
would, to prove the hostile test document really runs its macros when nothing stops it.

Run by the system python3 (the one with `uno`), never imported:

    python3 tests/office_control.py INPUT OUTPUT.pdf PROFILE_DIR

It starts soffice.bin on PROFILE_DIR (empty for LibreOffice's defaults, or a profile written by
convertd.office.write_profile), loads the document with a view and MacroExecutionMode
ALWAYS_EXECUTE_NO_WARN, and exports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "convertd" / "office"))

import helper as office_helper
import uno  # type: ignore[import-not-found]

ALWAYS_EXECUTE_NO_WARN = 4


def main(source: str, target: str, profile: str, soffice: str) -> None:
    pipe = f"convertd-control-{Path(profile).name}"
    office = office_helper.start_office(soffice, profile, pipe)
    try:
        try:
            desktop = office_helper.connect(pipe, office)
        except Exception:
            if office.wait() != office_helper.RESTART_REQUESTED:
                raise
            office = office_helper.start_office(soffice, profile, pipe)
            desktop = office_helper.connect(pipe, office)
        document = desktop.loadComponentFromURL(
            uno.systemPathToFileUrl(source),
            "_blank",
            0,
            office_helper.props(Hidden=False, MacroExecutionMode=ALWAYS_EXECUTE_NO_WARN),
        )
        document.storeToURL(
            uno.systemPathToFileUrl(target), office_helper.props(FilterName="writer_pdf_Export")
        )
        document.close(True)
    finally:
        office.kill()
        office.wait()


if __name__ == "__main__":
    main(*sys.argv[1:5])
