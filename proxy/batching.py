"""Write coalescing: concurrent writes to one head travel as one WriteRequest.

Pure: the queue decides *what* to send and *when*, the shell does the sending. There is no
timer: an idle proxy sends a write at once (a batch of one); while `max_in_flight` batches are in
flight, new writes wait and leave together as soon as one returns. Batches are bounded in operations and
bytes (a gRPC message has a size limit), and the waiting queue is bounded so an overloaded
proxy refuses quickly instead of queueing without end.

Under load the batch size adapts: up to `extra_in_flight` more batches may be out, but only batches
of at least `extra_min_ops` writes. A light load never fills one, so it keeps `max_in_flight` batches
of whatever arrives; a heavy one keeps more of the chain busy at once (each node works on one batch
while the next syncs or travels), in batches still large enough to be worth their fixed cost.
"""

from __future__ import annotations

from collections import deque


class BatchQueue[T]:
    def __init__(self, max_ops: int = 256, max_bytes: int = 3 << 20, max_pending: int = 10_000,
                 max_in_flight: int = 1, extra_in_flight: int = 0, extra_min_ops: int = 1) -> None:
        if max_ops < 1 or max_bytes < 1 or max_pending < 1 or max_in_flight < 1 or extra_min_ops < 1:
            raise ValueError("batch limits must be positive")
        if extra_in_flight < 0:
            raise ValueError("extra_in_flight must not be negative")
        self.max_ops = max_ops
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.max_in_flight = max_in_flight
        self.extra_in_flight = extra_in_flight
        self.extra_min_ops = min(extra_min_ops, max_ops)  # a full batch always qualifies
        self._waiting: deque[tuple[T, int]] = deque()
        self.sending = 0  # batches taken and not yet done

    @property
    def in_flight(self) -> bool:
        """Whether any batch is out."""
        return self.sending > 0

    def __len__(self) -> int:
        return len(self._waiting)

    def waiting(self) -> list[T]:
        """The items queued and not yet taken, oldest first."""
        return [item for item, _ in self._waiting]

    def offer(self, item: T, size: int) -> bool:
        """Queue a write of `size` bytes; False when the queue is full (the caller refuses it)."""
        if len(self._waiting) >= self.max_pending:
            return False
        self._waiting.append((item, size))
        return True

    def take(self) -> list[T] | None:
        """The next batch to send, or None while nothing waits or no slot is open: the first
        `max_in_flight` slots take any batch, the `extra_in_flight` after them only a batch of at
        least `extra_min_ops` writes (or one already at a size limit).

        A batch always holds at least one write, even one larger than `max_bytes` alone.
        """
        if not self._waiting:
            return None
        if self.sending >= self.max_in_flight and (
                self.sending >= self.max_in_flight + self.extra_in_flight or not self._fills_extra_slot()):
            return None
        batch: list[T] = []
        total = 0
        while self._waiting and len(batch) < self.max_ops:
            item, size = self._waiting[0]
            if batch and total + size > self.max_bytes:
                break
            self._waiting.popleft()
            batch.append(item)
            total += size
        self.sending += 1
        return batch

    def _fills_extra_slot(self) -> bool:
        if len(self._waiting) >= self.extra_min_ops:
            return True
        return sum(size for _, size in self._waiting) >= self.max_bytes  # few writes, but a full batch

    def done(self) -> None:
        """A batch returned; the next `take` may send."""
        if self.sending == 0:
            raise RuntimeError("done() without a batch in flight")
        self.sending -= 1
