"""Conversion tools run at a lower CPU priority than the daemon.

On a small box every core is busy while files convert; the API must still answer at once. So
every tool convertd starts (FFmpeg, LibreOffice, pdftoppm) runs under `nice`, and the daemon's
event loop, at the normal priority, wins the CPU whenever it has work. The daemon's own threads
(Pillow, pypdf, archives) are left at the normal priority: measured here, lowering them only
made in-process conversions slower, and they share the event loop's interpreter lock anyway.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

NICENESS = 19

NICE = shutil.which("nice")


def niced(argv: Sequence[str]) -> list[str]:
    """argv run under `nice`, when the system has it."""
    if NICE is None:
        return list(argv)
    return [NICE, "-n", str(NICENESS), *argv]
