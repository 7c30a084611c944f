"""The proxy's reports of silent nodes to the coordinator: a thin loop around `NodeReachability`.

A node silent for longer than PROXY_SILENCE (keychain.timing) is first probed: a GetStatus call
with a PROXY_PROBE_TIMEOUT deadline. A node that answers it is reachable (its writes wait on the
chain) and is not reported. One that does not is sent to a coordinator with ReportUnreachable
(the coordinator that took the last report first, then the others), again every
PROXY_REPORT_EVERY while that lasts; what the coordinator makes of a report is its supervision's
decision, not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

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
        probe: Callable[[str, float], Awaitable[None]],
        *,
        silence: float = timing.PROXY_SILENCE,
        probe_timeout: float = timing.PROXY_PROBE_TIMEOUT,
        every: float = timing.PROXY_REPORT_EVERY,
        rpc_timeout: float = timing.RPC_TIMEOUT,
        clock: Callable[[], float] | None = None,  # default: the event loop's time, which the gateway uses
    ) -> None:
        self.reachability = reachability
        self.watcher = watcher
        self.metrics = metrics
        self.reporter = reporter  # this proxy's name: its reports are weighed together
        self.probe = probe  # (address, timeout): returns once the node answered, raises otherwise
        self.silence = silence
        self.probe_timeout = probe_timeout
        self.every = every
        self.rpc_timeout = rpc_timeout
        self.clock = clock
        self._preferred = ""  # the coordinator that took the last report
        self._probes: set[asyncio.Task[None]] = set()
        self._probe_done = asyncio.Event()

    async def run(self) -> None:
        """Probe and report silent nodes until cancelled. It wakes when a probe or a report may be
        due or a probe finished, and otherwise once per `silence` (a request sent meanwhile is due no
        earlier than that), not on a fast tick."""
        try:
            while True:
                at = self.reachability.next_due(self.silence, self.every)
                delay = self.silence if at is None else min(max(at - self._now(), 0.0) + _PAST_DUE, self.silence)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._probe_done.wait(), delay)
                self._probe_done.clear()
                await self.report_due()
        finally:
            for task in self._probes:
                task.cancel()

    def _now(self) -> float:
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()

    async def report_due(self) -> None:
        """Send a report for each node due one (at most one round of coordinators each)."""
        topology = self.watcher.topology
        if topology is None:
            return
        ids = {m.address: m.id for m in topology.members()}
        self.reachability.retain(set(ids))
        for address in self.reachability.to_probe(self._now(), self.silence):
            request = self.reachability.probe_sent(address, self._now())
            task = asyncio.get_running_loop().create_task(self._probe(address, request))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
        for silent in self.reachability.due(self._now(), self.silence, self.every):
            await self._report(ids[silent.address], topology.epoch, silent)

    async def _probe(self, address: str, request: int) -> None:
        try:
            await self.probe(address, self.probe_timeout)
        except grpc.aio.AioRpcError as e:
            self.reachability.failed(address, request)
            self.metrics.silence_probes.labels("unanswered").inc()
            log.info("a silent node left its probe unanswered address=%s code=%s", address, e.code().name)
        else:
            self.reachability.answered(address, request)
            self.metrics.silence_probes.labels("answered").inc()
            log.debug("a silent node answered its probe address=%s", address)
        self._probe_done.set()

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
