"""Dynamic batching: requests put decoded images on a queue; one worker gathers them into batches and runs the model
in a thread, so the event loop keeps accepting and decoding requests meanwhile.

The worker waits for more images (up to `max_wait_ms`) only while other requests are still being decoded, so a lone
request runs at once, with no added latency; a lone one-image request even runs on the event loop itself, since
nothing else needs the loop then. Under load, batches fill up to `max_batch`.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["Batcher"]


@dataclass
class _Job:
    images: np.ndarray          # uint8 [k, S, S, 3]
    future: asyncio.Future


class Batcher:
    def __init__(self, runner, max_batch: int = 32, max_wait_ms: float = 5.0, on_batch=None, alone=None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.runner, self.max_batch, self.max_wait = runner, int(max_batch), max(0.0, max_wait_ms) / 1000
        self.on_batch = on_batch or (lambda n, seconds: None)
        self.alone = alone or (lambda: False)    # True while the server has no other request to attend to
        self.coming = 0             # requests being decoded: images that will reach the queue soon
        self._queue: asyncio.Queue | None = None
        self._carry: _Job | None = None
        self._task: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._busy = False          # the worker is running a batch

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._arrived = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="nbml-infer")
        self._task = asyncio.get_running_loop().create_task(self._work(), name="nbml-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities [k, classes] for uint8 images [k, S, S, 3]."""
        if self._task is None or self._task.done():
            raise RuntimeError("the model worker is not running")
        if (len(images) == 1 and not self._busy and self._carry is None and self._queue.empty() and self.coming == 0
                and self.alone()):
            return self._timed(images)    # a lone image: run it here, without two trips through the worker
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(images, future))
        self._arrived.set()
        return await future

    async def _next(self, deadline: float | None) -> _Job | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        if deadline is None:
            return await self._queue.get()
        timeout = deadline - time.perf_counter()
        if timeout <= 0 or self.coming <= 0:
            return None
        # Wait on an event, not on queue.get(): a get() cancelled by the timeout can lose its item on Python < 3.12;
        # a lost wake-up only ends this wait early, the job stays on the queue.
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            pass
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _gather(self) -> list[_Job]:
        jobs = [await self._next(None)]
        n = len(jobs[0].images)
        deadline = time.perf_counter() + self.max_wait
        while n < self.max_batch:
            job = await self._next(deadline)
            if job is None:
                break
            if n + len(job.images) > self.max_batch:
                self._carry = job       # first in the next batch
                break
            jobs.append(job)
            n += len(job.images)
        return jobs

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = [self.runner(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _timed(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        probs = self._run(batch)
        self.on_batch(len(batch), time.perf_counter() - t0)
        return probs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._busy = False
            jobs = await self._gather()
            self._busy = True
            jobs = [j for j in jobs if not j.future.done()]     # a client that went away
            if not jobs:
                continue
            batch = jobs[0].images if len(jobs) == 1 else np.concatenate([j.images for j in jobs])
            try:
                probs = await loop.run_in_executor(self._pool, self._timed, batch)
            except asyncio.CancelledError:
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(RuntimeError("the server is shutting down"))
                raise
            except Exception as e:
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            start = 0
            for j in jobs:
                k = len(j.images)
                if not j.future.done():
                    j.future.set_result(probs[start:start + k])
                start += k
