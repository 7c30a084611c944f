"""The node's sync thread: one dedicated thread that runs the store's fsyncs, one at a time, and hands
each result to the event loop as an asyncio future.

`asyncio.to_thread` would do the same through the loop's default executor, but every call copies the
context, builds a `concurrent.futures.Future`, takes the pool's locks and chains the two futures with
callbacks on both sides; a node under load syncs once per Ready, so that overhead is paid on every
batch. Here a call is one queue put and one `call_soon_threadsafe` back. Written by hand: the standard
library's executors offer no cheaper hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.cancelled():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


class SyncThread:
    """Runs blocking calls in order on one thread of its own (started on first use)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], Callable[[], None]] | None]
        self._calls = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, call: Callable[[], None]) -> asyncio.Future[None]:
        """Run `call` on the thread; the future completes (on the running loop) when it returns or raises."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        self._calls.put((loop, fut, call))
        return fut

    def close(self) -> None:
        """Let the thread end once the calls already given have run."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread = None

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            loop, fut, call = item
            error: BaseException | None = None
            try:
                call()
            except BaseException as e:  # handed to the awaiting task, as to_thread would
                error = e
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits the result any more
                loop.call_soon_threadsafe(_settle, fut, error)
