"""Conversion work runs at a lower CPU priority than the daemon's event loop.

On a small box every core is busy while files convert; the API must still answer at once. So
every tool convertd starts runs under `nice`, and CPU-bound Python work (Pillow, archives, pypdf,
hashing) runs in a thread pool whose threads lowered their own niceness (on Linux niceness is per
thread). The event loop keeps the default priority and wins the CPU whenever it has work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

NICENESS = 19
THREADS = 8

P = ParamSpec("P")
T = TypeVar("T")

NICE = shutil.which("nice")


def niced(argv: Sequence[str]) -> list[str]:
    """argv run under `nice`, when the system has it."""
    if NICE is None:
        return list(argv)
    return [NICE, "-n", str(NICENESS), *argv]


def _lower_this_thread() -> None:
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), NICENESS))


_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            THREADS, thread_name_prefix="convert", initializer=_lower_this_thread
        )
    return _pool


async def in_background(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Like asyncio.to_thread, on a low-priority thread meant for conversion work."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))
