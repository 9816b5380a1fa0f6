"""The per-VMA lock model in virtual time (concurrency/vma_lock.py)."""

from __future__ import annotations

from typing import Any

import pytest

from concurrency.engine import Engine, SimTask, SimulationError
from concurrency.instrument import Instrument
from concurrency.lock import LockCosts, LockMisuse
from concurrency.lockdep import OrderChecker
from concurrency.mutex import Mutex
from concurrency.vma_lock import MmLockSeq, VmaLock


class FakeLockdep(Instrument):
    """Records what the lock passes to the order checker."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_lock_acquire(self, task: SimTask, key: str, read: int, trylock: bool, instance: str) -> None:
        self.calls.append(("acquire", task.name, key, read, trylock))

    def on_lock_release(self, task: SimTask, key: str, instance: str) -> None:
        self.calls.append(("release", key))


def misuse_of(exc: pytest.ExceptionInfo[SimulationError]) -> LockMisuse:
    cause = exc.value.__cause__
    assert isinstance(cause, LockMisuse), cause
    return cause


def test_read_try_fails_while_write_locked_and_succeeds_after_mark_unlocked() -> None:
    engine = Engine(2)
    vma = VmaLock(engine)
    log: list[tuple[int, str, bool]] = []

    async def writer() -> None:
        await vma.vma_start_write()
        await engine.delay(1000)
        vma.mark_unlocked()  # what mmap_write_unlock does

    async def reader() -> None:
        await engine.delay(500)
        log.append((engine.now, "try", vma.vma_start_read()))
        await engine.delay(1000)
        ok = vma.vma_start_read()
        log.append((engine.now, "try", ok))
        await engine.delay(10)
        vma.vma_end_read()

    engine.spawn("writer", writer)
    engine.spawn("reader", reader)
    engine.run()
    assert log == [(500, "try", False), (1500, "try", True)]
    cls = vma.lclass
    assert cls.events["vma_read_fail"] == 1 and cls.events["vma_read_fail_locked"] == 1
    assert cls.read.acquisitions == 1 and cls.read.contentions == 0
    assert cls.read.hold.total_ns == 10
    assert cls.write.acquisitions == 1 and cls.write.contentions == 0
    assert cls.write.hold.total_ns == 1000  # write-locked until the mm unlocked it


def test_writer_waits_for_readers_to_drain_and_excludes_new_readers() -> None:
    engine = Engine(3)
    vma = VmaLock(engine)
    log: list[tuple[int, str]] = []

    async def reader1() -> None:
        assert vma.vma_start_read()
        await engine.delay(1000)
        vma.vma_end_read()
        log.append((engine.now, "r1 out"))

    async def writer() -> None:
        await engine.delay(100)
        await vma.vma_start_write()
        log.append((engine.now, "w locked"))
        await engine.delay(50)
        vma.mark_unlocked()

    async def reader2() -> None:
        await engine.delay(500)  # the writer is waiting: VMA_LOCK_OFFSET is set
        log.append((engine.now, f"r2 try {vma.vma_start_read()}"))

    engine.spawn("reader1", reader1)
    w = engine.spawn("writer", writer)
    engine.spawn("reader2", reader2)
    engine.run()
    assert log == [(500, "r2 try False"), (1000, "r1 out"), (1000, "w locked")]
    cls = vma.lclass
    assert cls.events["vma_read_fail_writer"] == 1
    assert cls.write.contentions == 1
    assert cls.write.wait.total_ns == 900
    assert cls.write.to_dict()["contention_points"] == {"-": 1}
    assert w.sleep_ns == 900 and w.spin_ns == 0  # the writer sleeps (rcuwait), it does not spin


def test_writer_not_woken_by_reader_leaving_during_its_atomic() -> None:
    """A reader leaving while the writer still pays its refcount atomic must not wake it."""
    engine = Engine(2, lock_costs=LockCosts(atomic_ns=100, bounce_ns=0, handoff_ns=0))
    vma = VmaLock(engine)
    done: list[int] = []

    async def reader() -> None:
        assert vma.vma_start_read()
        await engine.delay(50)
        vma.vma_end_read()

    async def writer() -> None:
        await engine.delay(10)
        await vma.vma_start_write()
        done.append(engine.now)
        vma.mark_unlocked()

    engine.spawn("reader", reader)
    engine.spawn("writer", writer)
    engine.run()
    assert done == [110]
    assert vma.lclass.write.contentions == 0


def test_vma_end_write_all_unlocks_every_vma_of_the_mm() -> None:
    engine = Engine(2)
    held = [False]
    mm = MmLockSeq(mmap_write_held=lambda: held[0])
    vmas = [VmaLock(engine, instance=f"vma{i}", mm_seq=mm) for i in range(3)]
    other = VmaLock(engine, instance="other-mm")  # a different mm's VMA is untouched
    seen: list[tuple[int, list[bool]]] = []

    async def forker() -> None:
        held[0] = True  # mmap_write_lock
        for v in vmas:
            await v.vma_start_write()
        await vmas[0].vma_start_write()  # already locked in this cycle: no-op
        await other.vma_start_write()
        await engine.delay(1000)
        mm.vma_end_write_all()  # mmap_write_unlock
        held[0] = False
        await engine.delay(1000)
        other.mark_unlocked()

    async def faulter() -> None:
        for t in (500, 1500):
            await engine.delay(t - engine.now)
            got = [v.vma_start_read() for v in vmas]
            seen.append((engine.now, [*got, other.vma_start_read()]))
            for v, ok in zip(vmas, got, strict=True):
                if ok:
                    v.vma_end_read()

    engine.spawn("forker", forker)
    engine.spawn("faulter", faulter)
    engine.run()
    assert seen == [(500, [False] * 4), (1500, [True, True, True, False])]
    assert mm.seq == 1 and mm.locked == []
    assert vmas[0].lclass.events["vma_write_relock"] == 1
    assert vmas[0].lclass.write.acquisitions == 4  # three of the mm, one of the other mm
    assert vmas[0].lclass.write.hold.total_ns == 3 * 1000 + 2000


def test_mark_unlocked_is_a_noop_when_not_write_locked() -> None:
    engine = Engine(1)
    vma = VmaLock(engine)

    async def task() -> None:
        vma.mark_unlocked()
        await vma.vma_start_write()
        vma.mark_unlocked()
        vma.mark_unlocked()
        assert vma.vma_start_read()
        vma.vma_end_read()

    engine.spawn("t", task)
    engine.run()
    assert vma.lclass.write.acquisitions == 1 and vma.lclass.read.acquisitions == 1


def test_vma_start_write_requires_mmap_write_lock() -> None:
    engine = Engine(1)
    vma = VmaLock(engine, mmap_write_held=lambda: False)

    async def task() -> None:
        await vma.vma_start_write()

    engine.spawn("t", task)
    with pytest.raises(SimulationError) as exc:
        engine.run()
    assert "mmap_assert_write_locked" in str(misuse_of(exc))


def test_lock_own_hook_overrides_the_mm_hook() -> None:
    engine = Engine(1)
    vma = VmaLock(engine, mm_seq=MmLockSeq(mmap_write_held=lambda: False),
                  mmap_write_held=lambda: True)

    async def task() -> None:
        await vma.vma_start_write()
        vma.mark_unlocked()

    engine.spawn("t", task)
    engine.run()
    assert vma.lclass.write.acquisitions == 1


@pytest.mark.parametrize("case", ["end_read_not_held", "double_read", "write_while_reading",
                                  "unlock_by_other_task", "second_writer"])
def test_misuse_raises(case: str) -> None:
    engine = Engine(2)
    vma = VmaLock(engine)

    async def first() -> None:
        if case == "end_read_not_held":
            vma.vma_end_read()
        elif case == "double_read":
            assert vma.vma_start_read()
            vma.vma_start_read()
        elif case == "write_while_reading":
            assert vma.vma_start_read()
            await vma.vma_start_write()
        else:
            await vma.vma_start_write()
            await engine.delay(100)
            vma.mark_unlocked()

    async def second() -> None:
        await engine.delay(10)
        if case == "unlock_by_other_task":
            vma.mark_unlocked()
        elif case == "second_writer":
            await vma.vma_start_write()

    engine.spawn("first", first)
    if case in ("unlock_by_other_task", "second_writer"):
        engine.spawn("second", second)
    with pytest.raises(SimulationError) as exc:
        engine.run()
    assert vma.name in str(misuse_of(exc))


def test_lockdep_sees_trylock_readers_and_a_writer_held_only_while_waiting() -> None:
    engine = Engine(1)
    dep = FakeLockdep()
    engine.add_instrument(dep)
    vma = VmaLock(engine)

    async def task() -> None:
        assert vma.vma_start_read()
        vma.vma_end_read()
        await vma.vma_start_write()
        dep.calls.append(("marker",))
        vma.mark_unlocked()

    engine.spawn("t", task)
    engine.run()
    assert dep.calls == [
        ("acquire", "t", "vma_lock", 1, True),
        ("release", "vma_lock"),
        ("acquire", "t", "vma_lock", 0, False),
        ("release", "vma_lock"),  # __vma_exit_locked: released before the VMA is unlocked
        ("marker",),
    ]


def test_deadlock_report_names_the_readers_a_writer_waits_for() -> None:
    engine = Engine(2)
    vma = VmaLock(engine)

    async def stuck_reader() -> None:
        assert vma.vma_start_read()
        await engine.block(vma)  # waits forever while holding a read reference

    async def writer() -> None:
        await engine.delay(5)
        await vma.vma_start_write()

    engine.spawn("reader", stuck_reader)
    engine.spawn("writer", writer)
    with pytest.raises(Exception, match="writer waits for vma_lock held by reader"):
        engine.run()


def test_fork_pattern_gives_the_order_checker_one_edge_and_no_recursion() -> None:
    """fork: mmap_write_lock, then vma_start_write on every VMA; faults read-try VMA locks."""
    engine = Engine(2)
    checker = OrderChecker()
    engine.add_instrument(checker)
    mmap_lock = Mutex(engine, "mm->mmap_lock")
    mm = MmLockSeq(mmap_write_held=lambda: mmap_lock.owner is engine.current)
    vmas = [VmaLock(engine, instance=f"vma{i}", mm_seq=mm) for i in range(3)]
    held_during: list[list[str]] = []

    async def fork() -> None:
        await mmap_lock.lock()
        for v in vmas:
            await v.vma_start_write()
        assert engine.current is not None
        held_during.append(checker.held(engine.current.tid))
        mm.vma_end_write_all()
        mmap_lock.unlock()

    async def fault() -> None:
        await engine.delay(10)
        if vmas[1].vma_start_read():
            vmas[1].vma_end_read()

    engine.spawn("fork", fork)
    engine.spawn("fault", fault)
    engine.run()
    assert held_during == [["mm->mmap_lock"]]
    assert checker.findings == []
    assert checker.edges() == [("mm->mmap_lock", "vma_lock")]
