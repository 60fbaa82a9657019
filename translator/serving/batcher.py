"""An asyncio micro-batcher: concurrent requests share one decoding call.

Requests queue up in arrival order. A worker takes the oldest request and, for up to a short
batching window (counted from that request's arrival) or until `max_batch_size` sentences are
waiting, collects every queued request with the same decoding options; then it decodes all their
sentences with ONE `backend.translate` call and gives each request its slice. Decoding runs in
`workers` threads, so TensorFlow works off the event loop (slow or idle clients never wait for
it) and at most `workers` calls at a time: one worker collects the next batch while the others
decode (a search step keeps about one core busy, so on a 2-core CPU two batches at once use the
second). Requests with other options wait for the next batch.

When a batch of several requests fails, its requests are decoded again one by one, so an error goes
to the request that causes it only (the others get their answers, a little later); an error of a
batch of one request goes to that request. The worker itself never stops on an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from translator.serving.backend import Backend

T = TypeVar("T")
log = logging.getLogger("translator.serving")


class ShuttingDown(RuntimeError):
    """The server is stopping: the request was not decoded (or not to the end)."""

    def __init__(self) -> None:
        super().__init__("the server is shutting down; send the request again")


@dataclasses.dataclass(frozen=True)
class Options:
    """The decoding options a batch shares."""

    beam_size: int
    n_best: int
    length_penalty: float


@dataclasses.dataclass
class _Request:
    texts: list[str]
    options: Options
    future: asyncio.Future
    arrived: float


class Batcher:
    """Batches `translate` requests for a backend.

    Args:
        backend: what decodes.
        window_ms: how long the oldest request may wait for others to join its batch.
        max_batch_size: a batch closes when this many sentences wait (a larger request is decoded
            alone).
        workers: batches decoded at once, each in a thread of its own.

    Use inside a running event loop: `start()`, then `await translate(...)`, then `await stop()`.
    """

    def __init__(
        self,
        backend: Backend,
        window_ms: float = 5.0,
        max_batch_size: int = 64,
        workers: int = 1,
    ):
        if window_ms < 0:
            raise ValueError(f"batch window must be 0 ms or more, got {window_ms}")
        if max_batch_size < 1:
            raise ValueError(f"max batch size must be at least 1, got {max_batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.backend = backend
        self.window = window_ms / 1000.0
        self.max_batch_size = max_batch_size
        self.workers = workers
        self.executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="decode")
        self._queue: list[_Request] = []
        self._arrival: asyncio.Event | None = None
        self._collecting: asyncio.Lock | None = None  # one worker collects a batch at a time
        self._tasks: list[asyncio.Task] = []
        self._decoding: list[list[_Request]] = []  # the batches in the decoding threads
        self._closed = False
        # For /health and tests: how many backend calls, and sentences in them, so far.
        self.batches = 0
        self.sentences = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._arrival = asyncio.Event()
        self._collecting = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name=f"batcher-{i}") for i in range(self.workers)
        ]

    def close(self) -> None:
        """Take no more requests: new and queued ones (not yet decoding) fail with
        `ShuttingDown` at once; the batches being decoded go on (see `abandon`)."""
        self._closed = True
        self._fail(self._queue, ShuttingDown())
        self._queue.clear()

    def abandon(self) -> None:
        """Fail the requests of the batches still being decoded with `ShuttingDown` (their
        threads finish the batch, whose results are dropped)."""
        self.close()
        for batch in self._decoding:
            self._fail(batch, ShuttingDown())

    async def stop(self) -> None:
        self.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- requests ------------------------------------------------------------------------------
    async def translate(self, texts: list[str], options: Options) -> list[list[tuple[str, float]]]:
        """The backend's n-best lists for `texts`, decoded in a batch with other requests."""
        if not self._tasks:
            raise RuntimeError("Batcher.start() was not called")
        if self._closed:
            raise ShuttingDown()
        if not texts:
            return []
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(list(texts), options, future, time.monotonic()))
        self._arrival.set()
        return await future

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the decoding thread (between batches), e.g. `backend.align`."""
        if self._closed:
            raise ShuttingDown()
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- the worker ----------------------------------------------------------------------------
    def _waiting(self, options: Options) -> int:
        return sum(len(r.texts) for r in self._queue if r.options == options)

    async def _collect(self) -> list[_Request]:
        """The next batch: wait for a request, then up to the batching window for others with
        its options (or until `max_batch_size` sentences wait)."""
        while not self._queue:
            self._arrival.clear()
            await self._arrival.wait()
        options = self._queue[0].options
        deadline = self._queue[0].arrived + self.window
        while self._waiting(options) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return self._take(options)

    async def _run(self) -> None:
        while True:
            async with self._collecting:
                batch = await self._collect()
            self._decoding.append(batch)
            try:
                await self._decode(batch)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # A bug here must not stop the worker: every later request would wait forever.
                log.error("the batcher failed", exc_info=e)
                self._fail(batch, e)
            finally:
                self._decoding.remove(batch)

    def _take(self, options: Options) -> list[_Request]:
        """The oldest requests with `options`, up to `max_batch_size` sentences (at least one)."""
        batch: list[_Request] = []
        rest: list[_Request] = []
        size = 0
        for r in self._queue:
            fits = not batch or size + len(r.texts) <= self.max_batch_size
            if r.options == options and fits and not r.future.done():
                batch.append(r)
                size += len(r.texts)
            elif not r.future.done():  # a cancelled request is dropped
                rest.append(r)
        self._queue = rest
        return batch

    async def _backend(self, texts: list[str], o: Options) -> list[list[tuple[str, float]]]:
        """One `backend.translate` call in the decoding thread; n-best lists, one per text."""
        results = await asyncio.get_running_loop().run_in_executor(
            self.executor,
            lambda: self.backend.translate(
                texts, beam_size=o.beam_size, n_best=o.n_best, length_penalty=o.length_penalty
            ),
        )
        if len(results) != len(texts):
            raise RuntimeError(
                f"the backend returned {len(results)} results for {len(texts)} sentences"
            )
        self.batches += 1
        self.sentences += len(texts)
        return results

    @staticmethod
    def _fail(batch: list[_Request], error: BaseException) -> None:
        for r in batch:
            if not r.future.done():
                r.future.set_exception(error)

    async def _decode(self, batch: list[_Request]) -> None:
        """Decode `batch` (requests with the same options) in one call, or, when that fails and
        it has several requests, each request alone: an error reaches only the requests that
        fail by themselves."""
        if not batch:
            return
        try:
            try:
                results = await self._backend([t for r in batch for t in r.texts], batch[0].options)
            except Exception as e:
                if len(batch) == 1:
                    self._fail(batch, e)
                    return
                log.warning(
                    "a batch of %d requests failed (%s: %s); decoding them one by one",
                    len(batch),
                    type(e).__name__,
                    e,
                )
                for r in batch:
                    if r.future.done():  # the client went away
                        continue
                    try:
                        alone = await self._backend(r.texts, r.options)
                    except Exception as error:  # this request's own failure
                        r.future.set_exception(error)
                    else:
                        r.future.set_result(alone)
                return
        except asyncio.CancelledError:
            self._fail(batch, ShuttingDown())
            raise
        start = 0
        for r in batch:
            if not r.future.done():
                r.future.set_result(results[start : start + len(r.texts)])
            start += len(r.texts)
