"""Progress (rmapsim/progress.py): a trio task beside the work (pytest-trio, virtual clock), and the
thread form synchronous callers (sweep, explore, validate) keep using."""

from __future__ import annotations

import io
import time

import pytest
import trio
import trio.testing

from rmapsim.progress import Progress, format_ns


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _frames(text: str) -> list[str]:
    return [f for f in text.split("\r\033[K") if f]


async def test_progress_is_a_trio_task_with_virtual_time_and_an_eta(autojump_clock: trio.testing.MockClock) -> None:
    term = Terminal()
    progress = Progress("fork-heavy: anon_vma", stream=term)
    virtual = [0]
    progress.follow(lambda: (virtual[0], 10_000_000))

    async def simulate() -> str:
        for _ in range(10):
            await trio.sleep(1)  # one wall second (trio's clock: virtual here) per simulated ms
            virtual[0] += 1_000_000
        return "done"

    assert await progress.run_beside(simulate) == "done"
    frames = _frames(term.getvalue())
    assert frames, "drawn after the 2 s delay"
    # At 4.5 s four simulated ms of ten are done: 60 % left at 1.125 s per 10 % -> ETA 6.75 s.
    assert "fork-heavy: anon_vma [#########---------------] 4.00 ms / 10.00 ms virtual  4.5s  ETA 6.7s" in frames
    assert all("virtual" in f and "ETA" in f for f in frames)
    assert term.getvalue().endswith("\r\033[K")  # cleared when the work is done
    assert 14 <= progress.draws <= 17  # every 0.5 s from 2 s to 10 s


async def test_progress_is_silent_when_not_a_terminal(autojump_clock: trio.testing.MockClock) -> None:
    pipe = io.StringIO()
    progress = Progress("quiet", stream=pipe)
    assert not progress.enabled

    async def work() -> int:
        await trio.sleep(30)
        return 7

    assert await progress.run_beside(work) == 7
    assert pipe.getvalue() == "" and progress.draws == 0
    assert not Progress("x", stream=Terminal(), enabled=False).enabled  # --quiet


async def test_what_the_work_raises_comes_out_unwrapped(autojump_clock: trio.testing.MockClock) -> None:
    term = Terminal()
    progress = Progress("boom", stream=term)

    async def work() -> None:
        await trio.sleep(5)
        raise ValueError("the run failed")

    with pytest.raises(ValueError, match="the run failed"):  # not an ExceptionGroup
        await progress.run_beside(work)
    assert term.getvalue().endswith("\r\033[K")


async def test_cancelling_the_work_cancels_the_progress_task(autojump_clock: trio.testing.MockClock) -> None:
    term = Terminal()
    progress = Progress("long", stream=term, total=100)

    async def work() -> None:
        while True:
            await trio.sleep(1)
            progress.advance()

    with trio.move_on_after(20) as scope:
        await progress.run_beside(work)
    assert scope.cancelled_caught
    assert "long [####--------------------] 19/100  20s  ETA 83s" in term.getvalue()  # items done / total
    assert term.getvalue().endswith("\r\033[K")


def test_synchronous_callers_keep_the_thread_form() -> None:
    term = Terminal()
    with Progress("sweep fork-heavy", total=4, stream=term, delay=0, interval=0.01) as progress:
        progress.advance(2)
        deadline = time.monotonic() + 5
        while "2/4" not in term.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "sweep fork-heavy [############------------] 2/4" in term.getvalue()
    assert term.getvalue().endswith("\r\033[K")
    with Progress("off", total=1, stream=io.StringIO()) as quiet:  # not a terminal: no thread at all
        quiet.advance()
    assert quiet._thread is None


def test_line_formats() -> None:
    p = Progress("x", stream=io.StringIO())
    assert p.line(0.25) == "x / 0.2s"
    p.follow(lambda: (1_500, None))
    assert p.line(3.0) == "x 1.5 us virtual  3.0s"
    assert [format_ns(v) for v in (850, 12_500, 3_200_000, 1_500_000_000)] == ["850 ns", "12.5 us", "3.20 ms",
                                                                             "1.50 s"]
