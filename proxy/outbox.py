"""Outboxes: requests of one kind to each node, coalesced into batches, a bounded number in flight.

The pure `BatchQueue` decides what a batch carries and when it may leave; this is its I/O shell,
one queue per node address. The proxy keeps one `Outboxes` for writes (to the head) and one for
reads (to each member); they differ only in the queue's limits and in the function that sends a
batch. A batch's sender fills in each item's outcome; whatever it leaves unanswered is settled
with None when the batch returns, and the next batch leaves then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from .batching import BatchQueue


class Pending(Protocol):
    """One request waiting in an outbox; `done` resolves once its outcome is filled in."""

    @property
    def done(self) -> asyncio.Future[object]: ...


type SendBatch[T] = Callable[[str, list[T]], Awaitable[None]]


@dataclass
class _Outbox[T: Pending]:
    address: str
    queue: BatchQueue[T]
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sending: list[list[T]] = field(default_factory=list)  # the batches out, as taken from the queue

    @property
    def idle(self) -> bool:
        """No batch out and nothing waiting."""
        return not self.queue.in_flight and not len(self.queue)


class Outboxes[T: Pending]:
    """One outbox per node address; `send` carries a batch to an address."""

    def __init__(
        self,
        new_queue: Callable[[], BatchQueue[T]],
        send: SendBatch[T],
        returned: Callable[[str], Awaitable[None]],
    ) -> None:
        """`returned(address)` runs after each batch to `address` is settled (to prune, say)."""
        self._new_queue = new_queue
        self._send = send
        self._returned = returned
        self._boxes: dict[str, _Outbox[T]] = {}

    @property
    def addresses(self) -> set[str]:
        """Addresses with an outbox (members, or former members whose outbox is still draining)."""
        return set(self._boxes)

    def submit(self, address: str, item: T, size: int) -> bool:
        """Queue `item` of `size` bytes for `address`, sending at once if the outbox may; False when
        that outbox is full (the caller refuses the request)."""
        box = self._boxes.get(address)
        if box is None:
            box = self._boxes[address] = _Outbox(address, self._new_queue())
        if not box.queue.offer(item, size):
            return False
        self._flush(box)
        return True

    def outstanding(self, address: str) -> list[T]:
        """The requests to `address` not yet settled: queued, or in a batch that is out."""
        box = self._boxes.get(address)
        if box is None:
            return []
        items = [item for batch in box.sending for item in batch] + box.queue.waiting()
        return [item for item in items if not item.done.done()]

    def prune(self, keep: set[str]) -> bool:
        """Drop the idle outboxes of addresses not in `keep`; a busy one stays until it drains.
        Returns whether any was dropped."""
        gone = [a for a, box in self._boxes.items() if a not in keep and box.idle]
        for address in gone:
            del self._boxes[address]
        return bool(gone)

    def cancel(self) -> None:
        """Cancel every batch in flight (the proxy is closing)."""
        for box in self._boxes.values():
            for task in list(box.tasks):
                task.cancel()

    def _flush(self, box: _Outbox[T]) -> None:
        batch = box.queue.take()
        if batch is None:
            return
        box.sending.append(batch)
        task = asyncio.get_running_loop().create_task(self._run(box, batch))
        box.tasks.add(task)
        task.add_done_callback(box.tasks.discard)

    async def _run(self, box: _Outbox[T], taken: list[T]) -> None:
        batch = [item for item in taken if not item.done.done()]  # callers that gave up are not sent
        try:
            if batch:
                await self._send(box.address, batch)
        finally:
            box.sending = [b for b in box.sending if b is not taken]
            box.queue.done()
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)
            self._flush(box)
            await self._returned(box.address)
