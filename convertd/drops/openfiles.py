"""Which files some process still has open for writing, from /proc (Linux).

A scanner, an SMB or scp copy, or `exec 3>file` can keep a file open and write to it after a
pause longer than the settle time: size and mtime stand still, yet the file is not finished.
Such a file is not taken until it is closed. Only processes this user may inspect are seen (all
of them for root or the service's own user); a writer on another machine (NFS, SMB client) is
not, which is why delivery also checks that what was converted is still what is there.
"""

from __future__ import annotations

import os

ACCESS_MODE = os.O_ACCMODE
WRITING = {os.O_WRONLY, os.O_RDWR}


def _writing_flags(fdinfo: str) -> bool:
    for line in fdinfo.splitlines():
        if line.startswith("flags:"):
            return (int(line.split()[1], 8) & ACCESS_MODE) in WRITING
    return False


def open_for_writing(proc: str = "/proc") -> set[tuple[int, int]]:
    """(st_dev, st_ino) of every regular file a visible process has open for writing. Blocking;
    empty where there is no /proc."""
    found: set[tuple[int, int]] = set()
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
                    if not _writing_flags(fh.read()):
                        continue
                st = os.stat(f"{fd_dir}/{fd}")
            except (OSError, ValueError):
                continue
            found.add((st.st_dev, st.st_ino))
    return found
