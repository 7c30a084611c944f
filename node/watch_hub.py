"""The gRPC node's Watch streams: each one a `WatchCursor` over the driver's `WatchHistory`, woken
when the history grows, with heartbeats on idle streams and its metrics.

Every decision (what to send, COMPACTED, when a stream must end) is the cursor's
(`keychain.node.watch_history`); this module only waits, wakes and translates to protobuf. It runs
on the node's event loop, like every other caller of the core, so a cursor never sees the history
half-fed.

A stream's life: the first message goes out at once (the changes after `after_version`, or an empty
batch: the client knows its watch was accepted); then each batch of new changes as the node commits
them; an empty batch with the node's position every `heartbeat` seconds when nothing changed (it
keeps idle connections open, and checks the node still serves: lease, membership). An error batch
(COMPACTED, WRONG_EPOCH, LEASE_EXPIRED, UNAVAILABLE) is the last message of its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

from keychain.node import wire
from keychain.node.messages import Code, Error
from keychain.node.watch_history import WatchBatch, WatchCursor, WatchHistory
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from keychain.proto import chain_pb2

if TYPE_CHECKING:
    from keychain.node.core import ChainCore

HEARTBEAT = 1.0  # seconds between heartbeat batches on an idle stream


def batch_to_pb(b: WatchBatch) -> chain_pb2.WatchBatch:
    return chain_pb2.WatchBatch(
        error=wire.error_to_pb(b.error),
        events=[chain_pb2.WatchEvent(version=c.version, kind=int(c.kind), key=c.key, value=c.value)
                for c in b.changes],
        committed_seq=b.committed_seq,
        compact_version=b.compact_version,
    )


class WatchHub:
    """The Watch streams one node serves."""

    def __init__(self, core: ChainCore, history: WatchHistory, clock: Callable[[], float],
                 heartbeat: float = HEARTBEAT) -> None:
        self.core = core
        self.history = history
        self.clock = clock
        self.heartbeat = heartbeat
        self._wakes: set[asyncio.Event] = set()
        self._seen = history.last
        self._closed = False

    @property
    def watchers(self) -> int:
        return len(self._wakes)

    def notify(self) -> None:
        """The driver stepped: wake every stream if the history grew (cheap to call after each step)."""
        if self.history.last != self._seen:
            self._seen = self.history.last
            for wake in self._wakes:
                wake.set()

    def close(self) -> None:
        """The node is stopping: every stream ends with UNAVAILABLE."""
        self._closed = True
        for wake in self._wakes:
            wake.set()

    async def serve(self, epoch: int, start: bytes, end: bytes, after: int) -> AsyncIterator[WatchBatch]:
        """One Watch stream: batches until an error batch ends it (or the client goes away)."""
        cursor = WatchCursor(start, end, after)
        refused = cursor.gate(self.core, self.clock(), epoch)
        if refused is not None:
            yield refused
            return
        wake = asyncio.Event()
        self._wakes.add(wake)
        try:
            last_sent = -math.inf  # the first message goes out at once, empty if there is nothing to send
            while True:
                if self._closed:
                    yield WatchBatch(Error(Code.UNAVAILABLE, "the node is stopping", self.core.epoch),
                                     committed_seq=cursor.sent_through)
                    return
                ended = cursor.gate(self.core, self.clock())
                if ended is not None:
                    yield ended
                    return
                wake.clear()
                due = self.clock() - last_sent >= self.heartbeat
                batch = cursor.next(self.history, heartbeat=due)
                if batch is not None:
                    yield batch
                    last_sent = self.clock()
                    if cursor.done:
                        return
                    if batch.changes:
                        continue  # there may be more than one batch's worth
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(0.0, last_sent + self.heartbeat - self.clock()))
        finally:
            self._wakes.discard(wake)


class WatchCollector(Collector):
    """Prometheus gauges of the watch history and streams, read at scrape time."""

    def __init__(self, hub: WatchHub, node_id: str, chain: str) -> None:
        self._hub = hub
        self._labels = {"node": node_id, "chain": chain}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        h = self._hub.history
        names, values = list(self._labels), list(self._labels.values())
        for name, doc, value in (
            ("keychain_node_watch_history_changes", "Committed changes kept for watches", len(h)),
            ("keychain_node_watch_history_bytes", "Bytes of keys and values kept for watches", h.bytes),
            ("keychain_node_watch_compact_version",
             "Compact point: watches resume only after this version (older ones get COMPACTED)", h.floor),
            ("keychain_node_watch_history_last", "Committed seq the watch history is complete through", h.last),
            ("keychain_node_watchers", "Watch streams open on this node", self._hub.watchers),
        ):
            m = GaugeMetricFamily(name, doc, labels=names)
            m.add_metric(values, value)
            yield m
