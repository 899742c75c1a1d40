"""The one helper for periodic work: runs on time or when poked, outlives its errors, stops
cleanly and, when asked, runs once more at the stop."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from convertd.periodic import Periodic


def test_poke_runs_the_work_before_the_interval_ends() -> None:
    async def scenario() -> int:
        runs = 0

        async def work() -> None:
            nonlocal runs
            runs += 1

        periodic = Periodic("poked", work, interval=3600).start()
        await asyncio.sleep(0.05)  # the run at start
        periodic.poke()
        await asyncio.sleep(0.05)
        await periodic.stop()
        return runs

    assert asyncio.run(scenario()) == 2


def test_work_with_more_to_do_runs_again_at_once() -> None:
    async def scenario() -> list[int]:
        batches = [3, 2, 1, 0]
        done: list[int] = []

        async def work() -> bool:
            done.append(batches.pop(0))
            return done[-1] > 0

        periodic = Periodic("batches", work, interval=3600).start()
        await asyncio.sleep(0.05)
        await periodic.stop()
        return done

    assert asyncio.run(scenario()) == [3, 2, 1, 0]


def test_errors_are_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> int:
        calls = 0

        async def work() -> None:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise OSError("disk full")

        periodic = Periodic("flaky", work, interval=0.01)
        periodic.start()
        for _ in range(200):
            if calls >= 3:
                break
            await asyncio.sleep(0.05)
        await periodic.stop()
        return calls

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) >= 3
    assert sum(r.exc_info is not None for r in caplog.records) == 1  # a traceback once
    assert "failed again (2 in a row): disk full" in caplog.text


def test_a_long_outage_is_a_few_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine failures in a row (a database away for a while): a traceback for the first, a line
    at the 2nd, 4th and 8th, and one when it works again; not a line a second."""
    import convertd.periodic

    monkeypatch.setattr(convertd.periodic, "MIN_RETRY_SECONDS", 0.001)

    async def scenario() -> int:
        calls = 0

        async def work() -> None:
            nonlocal calls
            calls += 1
            if calls <= 9:
                raise ConnectionRefusedError("database down")

        periodic = Periodic("beat", work, interval=0.001)
        periodic.start()
        for _ in range(500):
            if calls >= 10:
                break
            await asyncio.sleep(0.01)
        await periodic.stop()
        return calls

    with caplog.at_level(logging.INFO):
        assert asyncio.run(scenario()) >= 10
    lines = [r.getMessage() for r in caplog.records if r.name == "convertd.periodic"]
    assert lines[0].startswith("beat failed; trying again")
    assert [line.split("(")[1].split(" ")[0] for line in lines[1:-1]] == ["2", "4", "8"]
    assert lines[-1] == "beat works again after 9 failures in a row"


def test_final_run_at_stop() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []

        async def flush() -> None:
            seen.append("flush")

        periodic = Periodic("flush", flush, interval=3600, run_at_start=False, final=True)
        periodic.start()
        await asyncio.sleep(0.02)
        assert seen == []
        await periodic.stop()
        return seen

    assert asyncio.run(scenario()) == ["flush"]


def test_stop_lets_a_final_flush_in_progress_finish_then_flushes_once_more() -> None:
    # Cancelling a flush mid-write could count its calls twice (the write commits on the
    # database thread anyway); the run in progress must end on its own.
    async def scenario() -> list[str]:
        seen: list[str] = []

        async def flush() -> None:
            seen.append("start")
            await asyncio.sleep(0.2)
            seen.append("end")

        periodic = Periodic("flush", flush, interval=3600, final=True).start()
        await asyncio.sleep(0.05)
        await periodic.stop()
        return seen

    assert asyncio.run(scenario()) == ["start", "end", "start", "end"]


def test_backoff_grows_after_each_failure_in_a_row() -> None:
    async def scenario() -> list[float]:
        times: list[float] = []
        loop = asyncio.get_running_loop()

        async def work() -> None:
            times.append(loop.time())
            raise OSError("inotify watch limit reached")

        periodic = Periodic("watch", work, interval=0.1, max_backoff=4.0).start()
        while len(times) < 3:
            await asyncio.sleep(0.05)
        await periodic.stop()
        return [b - a for a, b in itertools.pairwise(times)]

    gaps = asyncio.run(scenario())
    # 1 s, then 2 s (a sleep never ends early, so lower bounds are safe on a busy machine).
    assert gaps[0] >= 0.95 and gaps[1] >= 1.95


def test_work_that_knows_when_it_is_next_due_runs_then() -> None:
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def work() -> float:
            times.append(loop.time())
            return 0.3  # due again in 0.3 s, well before the hour

        periodic = Periodic("due", work, interval=3600).start()
        while len(times) < 3:
            await asyncio.sleep(0.05)
        await periodic.stop()
        return [b - a for a, b in itertools.pairwise(times)]

    assert all(gap >= 0.29 for gap in asyncio.run(scenario()))
