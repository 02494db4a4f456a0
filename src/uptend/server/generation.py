"""The current counters (generation, credentials), read once per burst of requests.

Each request must see every change committed before it arrived, so it cannot reuse a read
already in flight (that one may have started before the commit). It waits for the next read
instead, and every request that arrives while one read runs shares the next: at low load a
request costs one read; at high load one read serves all requests that queued behind it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GenerationReader(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._waiting: list[asyncio.Future[T]] = []  # for the read not yet started
        self._task: asyncio.Task[None] | None = None

    async def current(self) -> T:
        # One future per waiter: a cancelled request (client gone) cancels only its own.
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self._task is None:
            self._task = asyncio.create_task(self._reads())
        return await waiter

    async def _reads(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []  # later arrivals wait for the next read
                try:
                    value = await self._read()
                except Exception as e:  # noqa: BLE001 - every waiter of this read gets it
                    for waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(e)
                    continue
                for waiter in batch:
                    if not waiter.done():
                        waiter.set_result(value)
        finally:
            self._task = None
