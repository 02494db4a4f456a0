"""The current generation, read once for every burst of requests that arrive together.

Each request must see every change committed before it arrived, so it cannot reuse a read
already in flight (that one may have started before the commit). It waits for the next read
instead, and every request that arrives while one read runs shares the next: at low load a
request costs one read; at high load one read serves all requests that queued behind it.
"""

import asyncio
from collections.abc import Awaitable, Callable


class GenerationReader:
    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self._next: asyncio.Future[int] | None = None  # the read not yet started
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def current(self) -> int:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                self._running = True
                self._task = asyncio.create_task(self._reads())
        return await asyncio.shield(self._next)

    async def _reads(self) -> None:
        try:
            while self._next is not None:
                waiting, self._next = self._next, None  # later arrivals wait for the next read
                try:
                    waiting.set_result(await self._read())
                except Exception as e:  # noqa: BLE001 - every waiter of this read gets it
                    waiting.set_exception(e)
                    waiting.exception()  # retrieved: no "never retrieved" warning if all left
        finally:
            self._running = False
