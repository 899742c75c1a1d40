"""The event loop the daemon runs on: the one home of that choice (setting `event_loop`).

uvloop (libuv under asyncio's API) runs the same code with less CPU per callback, which is
most of what a status read costs beyond our own handlers. `auto` takes it where it is
installed and falls back to the standard library's loop otherwise (a platform without a
wheel, an install without it); `asyncio` keeps the standard library's loop on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopMissing(Exception):
    """`event_loop = "uvloop"` was asked for, and uvloop cannot be imported."""


def factory(choice: str) -> LoopFactory | None:
    """What makes the loop for `choice` (auto, uvloop or asyncio); None: asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise LoopMissing(f"event_loop is uvloop, which cannot be imported: {exc}") from None
        return None
    new_loop: LoopFactory = uvloop.new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """`asyncio.run(main)` on the loop `choice` names. Only this loop: the PostgreSQL writer
    thread and the CLI's short commands keep the standard library's."""
    try:
        loop_factory = factory(choice)
    except LoopMissing:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def name(loop: asyncio.AbstractEventLoop) -> str:
    """The running loop's name as the start-up line gives it: uvloop or asyncio."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
