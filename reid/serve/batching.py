"""Micro-batching: searches that arrive together are embedded in one forward pass and searched together.

A request waits at most ``max_wait`` seconds for others to join it, and a batch holds at most ``max_batch``
images, as inference servers batch; ``max_batch=1`` turns batching off (each request alone). The batch runs in a
worker thread, so the event loop keeps accepting requests meanwhile.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any


class MicroBatcher:
    """Collects submitted items into batches for ``process`` (a list of items in, a list of results out).

    Args:
        process: Runs one batch (in a worker thread); returns one result per item, in order.
        size: How many images an item carries (a batch holds at most ``max_batch`` of them).
        max_batch: Images per batch (1: no batching).
        max_wait: Seconds the first item of a batch waits for more.
    """

    def __init__(self, process: Callable[[Sequence[Any]], list[Any]], size: Callable[[Any], int] = lambda item: 1,
                 max_batch: int = 32, max_wait: float = 0.005) -> None:
        self.process, self.size = process, size
        self.max_batch, self.max_wait = max_batch, max_wait
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.batches: deque[int] = deque(maxlen=1000)  # items per recent batch, for tests and benchmarks

    def start(self) -> None:
        """Start the batching task on the running event loop (the application's lifespan does; a submit on a loop
        where it is not running starts it too)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        """Stop the batching task (requests still waiting get no answer: the server is shutting down)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def submit(self, item: Any) -> Any:
        """The result of ``item``, processed in the next batch (an exception of the batch is raised here)."""
        loop = asyncio.get_running_loop()
        self.start()
        future = loop.create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        held = None  # an item that did not fit the previous batch: it opens the next
        waiting: asyncio.Task | None = None  # a get() that timed out is kept, never cancelled: no item is lost

        async def next_item(timeout: float | None) -> Any:
            nonlocal waiting
            if waiting is None:
                if self._queue.qsize():
                    return self._queue.get_nowait()
                waiting = loop.create_task(self._queue.get())
            done, _ = await asyncio.wait({waiting}, timeout=timeout)
            if not done:
                return None
            item, waiting = waiting.result(), None
            return item

        while True:
            batch = [held if held is not None else await next_item(None)]
            held = None
            images = self.size(batch[0][0])  # an item larger than max_batch is a batch of its own
            deadline = time.monotonic() + self.max_wait
            while images < self.max_batch:
                following = await next_item(max(0.0, deadline - time.monotonic()))
                if following is None:
                    break
                if images + self.size(following[0]) > self.max_batch:
                    held = following
                    break
                batch.append(following)
                images += self.size(following[0])
            self.batches.append(len(batch))
            try:
                results = await loop.run_in_executor(None, self.process, [item for item, _ in batch])
            except Exception as error:  # noqa: BLE001  (each waiting request gets the batch's error)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
