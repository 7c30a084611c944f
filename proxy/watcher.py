"""Keeps the proxy's topology current from the coordinator.

A WatchChains stream delivers the configuration at once and then every change; any
coordinator member answers (a follower too), so on a broken stream the watcher moves to the
next member with jittered exponential backoff. When a node tells the proxy its epoch is
stale, `request_refresh` asks a coordinator directly (GetChain) instead of waiting for the
stream; concurrent requests share one call. A slow poll (GetChain every `poll_interval`)
covers a stream that stays open but silent, e.g. from a coordinator that was frozen.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import grpc

from keychain import timing
from keychain.backoff import Backoff, FailureStreak
from keychain.proto import chain_pb2, coordinator_pb2, coordinator_pb2_grpc
from keychain.tls_files import TlsFiles

from .channels import ChannelPool
from .topology import Topology, TopologyView

log = logging.getLogger("keychain.proxy.watcher")

Stub = coordinator_pb2_grpc.CoordinatorStub

# Reopening a broken watch stream on the next coordinator: up to 0.1 s at first, at most
# STREAM_RETRY_MAX (a coordinator reachable again is watched again within about a second).
WATCH_BACKOFF = Backoff(base=0.1, cap=timing.STREAM_RETRY_MAX)


class CoordinatorWatcher:
    def __init__(
        self,
        coordinators: tuple[str, ...],
        chain: str,
        *,
        rng: random.Random,
        backoff: Backoff = WATCH_BACKOFF,
        call_timeout: float = 2.0,
        poll_interval: float = 5.0,
        on_change: Callable[[Topology], None] | None = None,
        tls_files: TlsFiles | None = None,
    ) -> None:
        self.coordinators = coordinators
        self.chain = chain
        self.view = TopologyView(chain)
        self.rng = rng
        self.backoff = backoff
        self.call_timeout = call_timeout
        self.poll_interval = poll_interval
        self.on_change = on_change
        self.channels = ChannelPool(tls_files)
        self._changed = asyncio.Event()
        self._refreshing: asyncio.Task[None] | None = None
        self._next = 0

    @property
    def topology(self) -> Topology | None:
        return self.view.current

    def next_coordinator(self) -> str:
        address = self.coordinators[self._next % len(self.coordinators)]
        self._next += 1
        return address

    def stub(self, address: str) -> coordinator_pb2_grpc.CoordinatorStub:
        return self.channels.stub(address, Stub)

    def apply(self, config: chain_pb2.ChainConfig, source: str) -> None:
        if not self.view.apply(config):
            return
        topology = self.view.current
        assert topology is not None
        log.info(
            "topology chain=%s epoch=%d head=%s active=%d syncing=%d source=%s",
            topology.chain,
            topology.epoch,
            topology.head.id if topology.head else "-",
            len(topology.active),
            len(topology.syncing),
            source,
        )
        if self.on_change is not None:
            self.on_change(topology)
        # Wake everyone waiting for a change, then arm a fresh event for the next one.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a new topology; True if one arrived."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Watch forever, moving across coordinator members when a stream breaks."""
        poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            await self._watch()
        finally:
            poller.cancel()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.request_refresh()

    async def _watch(self) -> None:
        pauses = FailureStreak(self.backoff, self.rng)
        while True:
            address = self.next_coordinator()
            try:
                stream = self.stub(address).WatchChains(coordinator_pb2.WatchRequest(chain=self.chain))
                async for config in stream:
                    pauses.reset()
                    self.apply(config, source=address)
                log.info("watch ended coordinator=%s", address)
            except grpc.aio.AioRpcError as exc:
                log.info(
                    "watch failed coordinator=%s code=%s detail=%s", address, exc.code().name, exc.details()
                )
            await asyncio.sleep(pauses.delay())

    def request_refresh(self) -> None:
        """Ask a coordinator for the chain now; at most one such call runs at a time."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        for _ in range(len(self.coordinators)):
            address = self.next_coordinator()
            try:
                reply = await self.stub(address).GetChain(
                    coordinator_pb2.GetChainRequest(chain=self.chain), timeout=self.call_timeout
                )
            except grpc.aio.AioRpcError as exc:
                log.debug("refresh failed coordinator=%s code=%s", address, exc.code().name)
                continue
            if reply.error.code == coordinator_pb2.Code.OK:
                self.apply(reply.config, source=address)
                return
            log.debug("refresh refused coordinator=%s code=%d", address, reply.error.code)

    async def cluster_status(self) -> coordinator_pb2.ClusterStatus | None:
        """GetClusterStatus from the first coordinator member that answers, or None."""
        for _ in range(len(self.coordinators)):
            address = self.next_coordinator()
            try:
                reply = await self.stub(address).GetClusterStatus(
                    coordinator_pb2.ClusterStatusRequest(), timeout=self.call_timeout
                )
            except grpc.aio.AioRpcError:
                continue
            if reply.error.code == coordinator_pb2.Code.OK:
                return reply
        return None

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        await self.channels.close()
