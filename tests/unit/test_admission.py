"""The guard's admission (resnet_serving.torchserve.guard.Admission): at most ``limit`` requests inside
TorchServe, the next ones wait in arrival order for a bounded time. Pure asyncio, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from resnet_serving.errors import ConfigError, InputError
from resnet_serving.torchserve.guard import Admission, checked_admission_wait

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_admits_up_to_the_limit_at_once() -> None:
    async def go() -> list[bool]:
        a = Admission(limit=3, wait=0)
        got = [await a.enter() for _ in range(4)]
        assert a.inside == 3
        return got

    assert run(go()) == [True, True, True, False]


def test_a_place_passes_to_the_longest_waiting_request_first() -> None:
    async def go() -> list[int]:
        a = Admission(limit=1, wait=5)
        assert await a.enter()
        order: list[int] = []

        async def waiter(i: int) -> None:
            assert await a.enter()
            order.append(i)
            await asyncio.sleep(0)
            a.leave()

        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert a.waiting == 3 and a.inside == 1
        a.leave()
        await asyncio.gather(*tasks)
        assert (a.inside, a.waiting) == (0, 0)
        return order

    assert run(go()) == [0, 1, 2]


def test_a_request_that_waits_too_long_is_refused_after_the_wait() -> None:
    async def go() -> tuple[bool, float]:
        a = Admission(limit=1, wait=0.2)
        assert await a.enter()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        admitted = await a.enter()
        return admitted, loop.time() - t0

    admitted, waited = run(go())
    assert not admitted
    assert waited >= 0.19


def test_a_new_request_does_not_overtake_those_waiting() -> None:
    async def go() -> None:
        a = Admission(limit=1, wait=5)
        assert await a.enter()
        first = asyncio.create_task(a.enter())
        await asyncio.sleep(0.01)
        a.leave()  # the place goes to ``first``, not to a request arriving now
        second = asyncio.create_task(a.enter())
        await asyncio.sleep(0.01)
        assert first.done() and first.result() is True
        assert not second.done()
        a.leave()
        assert await second is True
        assert a.inside == 1

    run(go())


def test_a_cancelled_waiter_is_skipped_and_no_place_is_lost() -> None:
    async def go() -> None:
        a = Admission(limit=1, wait=5)
        assert await a.enter()
        gone = asyncio.create_task(a.enter())
        kept = asyncio.create_task(a.enter())
        await asyncio.sleep(0.01)
        gone.cancel()  # the client hung up while waiting
        await asyncio.sleep(0.01)
        a.leave()
        assert await kept is True
        a.leave()
        assert (a.inside, a.waiting) == (0, 0)

    run(go())


def test_beyond_max_waiting_a_request_is_refused_at_once() -> None:
    async def go() -> None:
        a = Admission(limit=1, wait=5, max_waiting=2)
        assert await a.enter()
        waiters = [asyncio.create_task(a.enter()) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert await a.enter() is False  # at once, not after the wait
        a.leave()
        a.leave()
        assert [await w for w in waiters] == [True, True]

    asyncio.run(asyncio.wait_for(go(), timeout=2))


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigError):
        Admission(limit=0, wait=1)
    for bad in (-1.0, float("nan"), 601.0):
        with pytest.raises(InputError, match="--admission-wait"):
            checked_admission_wait(bad)
    assert checked_admission_wait(0) == 0


def test_beyond_max_waiting_bytes_a_request_is_refused_at_once() -> None:
    async def go() -> None:
        a = Admission(limit=1, wait=5, max_waiting_bytes=1000)
        assert await a.enter(10)
        waiter = asyncio.create_task(a.enter(800))
        await asyncio.sleep(0.01)
        assert a.waiting_bytes == 800
        assert await a.enter(300) is False  # 1,100 bytes would wait: refused at once
        a.leave()
        assert await waiter is True
        assert (a.waiting, a.waiting_bytes) == (0, 0)

    run(go())
