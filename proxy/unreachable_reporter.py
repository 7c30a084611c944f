"""The proxy's reports of silent nodes to the coordinator: a thin loop around `NodeReachability`.

Every PROXY_REPORT_EVERY the nodes silent for longer than PROXY_SILENCE (keychain.timing) are sent
to a coordinator with ReportUnreachable (the coordinator that took the last report first, then the
others); what the coordinator makes of a report is its supervision's decision, not this module's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from keychain import timing
from keychain.proto import coordinator_pb2

from .metrics import ProxyMetrics
from .reachability import NodeReachability, Silent
from .watcher import CoordinatorWatcher

log = logging.getLogger("keychain.proxy.reports")

_PAST_DUE = 0.01  # seconds: wake just after a report falls due, not just before


class UnreachableReporter:
    def __init__(
        self,
        reachability: NodeReachability,
        watcher: CoordinatorWatcher,
        metrics: ProxyMetrics,
        reporter: str,
        *,
        silence: float = timing.PROXY_SILENCE,
        every: float = timing.PROXY_REPORT_EVERY,
        rpc_timeout: float = timing.RPC_TIMEOUT,
        clock: Callable[[], float] | None = None,  # default: the event loop's time, which the gateway uses
    ) -> None:
        self.reachability = reachability
        self.watcher = watcher
        self.metrics = metrics
        self.reporter = reporter  # this proxy's name: its reports are weighed together
        self.silence = silence
        self.every = every
        self.rpc_timeout = rpc_timeout
        self.clock = clock
        self._preferred = ""  # the coordinator that took the last report

    async def run(self) -> None:
        """Report silent nodes until cancelled. It wakes when a report may be due, and otherwise once
        per `silence` (a request sent meanwhile is due no earlier than that), not on a fast tick."""
        while True:
            at = self.reachability.next_due(self.silence, self.every)
            delay = self.silence if at is None else min(max(at - self._now(), 0.0) + _PAST_DUE, self.silence)
            await asyncio.sleep(delay)
            await self.report_due()

    def _now(self) -> float:
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()

    async def report_due(self) -> None:
        """Send a report for each node due one (at most one round of coordinators each)."""
        topology = self.watcher.topology
        if topology is None:
            return
        ids = {m.address: m.id for m in topology.members()}
        self.reachability.retain(set(ids))
        for silent in self.reachability.due(self._now(), self.silence, self.every):
            await self._report(ids[silent.address], topology.epoch, silent)

    async def _report(self, node_id: str, epoch: int, silent: Silent) -> None:
        request = coordinator_pb2.ReportUnreachableRequest(
            chain=self.watcher.chain, reporter=self.reporter, node_id=node_id, epoch=epoch,
            unreachable_ms=int(silent.silent_for * 1000))
        others = [a for a in self.watcher.coordinators if a != self._preferred]
        for address in ([self._preferred] if self._preferred else []) + others:
            try:
                reply = await self.watcher.stub(address).ReportUnreachable(request, timeout=self.rpc_timeout)
            except grpc.aio.AioRpcError as e:
                log.debug("unreachable report not delivered coordinator=%s code=%s", address, e.code().name)
                continue
            if reply.error.code == coordinator_pb2.UNAVAILABLE:  # no leader behind it now: the next one
                continue
            self._preferred = address
            outcome = "accepted" if reply.accepted else "not_counted"
            self.metrics.unreachable_reports.labels(outcome).inc()
            log.info("reported a silent node node=%s address=%s silent_for=%.2f epoch=%d outcome=%s",
                     node_id, silent.address, silent.silent_for, epoch, outcome)
            return
        self.metrics.unreachable_reports.labels("undelivered").inc()
        log.info("no coordinator took the report of a silent node node=%s silent_for=%.2f", node_id,
                 silent.silent_for)
