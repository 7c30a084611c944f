"""A chain node's link to the coordinator: register, then heartbeat, and follow what the replies say.

Every HEARTBEAT_INTERVAL the node sends a Heartbeat (its epoch, seqs, served counters, whether a
syncing node has caught up, and whether it is in sync in that epoch: holds everything committed,
which the coordinator needs before it may remove the chain's other members). A reply renews the lease for `lease_ms` counted from when the heartbeat
was SENT (never from when the reply arrived: the coordinator counts from when it received it, so the
node's lease always ends first) and carries the chain configuration: a newer epoch goes to the core.
Any coordinator member answers (followers forward to the leader); on a failure the node tries the
next address. A forwarded reply names the leader's address: if it is one of the node's addresses, the
next heartbeats go there directly (a forward costs the follower two calls per heartbeat). A reply saying the node is not a member carries the chain's configuration: the node
adopts it, with no lease (it has no role in it, so it serves nothing at once), then registers again.

Each heartbeat also carries the node's link-health report (`NodeDriver.link_report`, gray failures)
and its number `seq`. A reply that keeps the node a member but grants lease 0 revokes its lease
(the coordinator is removing it, or draining it): the node drops its lease at once, ignores from
then on any lease granted to a request it sent before, and tells the coordinator so with
`surrendered_below` (the number of its next heartbeat), which lets the removal proceed without
waiting for the lease to expire (keychain.coordinator.lease explains why that is safe). A node
whose lease has lapsed on its own (no grant came back for a lease's length: it hears nothing, say)
holds none either, and surrenders it the same way with every heartbeat it sends meanwhile, at no
cost: that heartbeat's own grant is honoured. So a node the coordinator revokes while it cannot hear
the revocation is removed once its lease lapsed, not a lease and a margin after the last grant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from keychain.node import wire
from keychain.node.link_health_wire import link_report_to_pb
from keychain.node.server import ChainNode

from keychain import timing, tls
from keychain.backoff import Backoff, FailureStreak
from keychain.proto import chain_pb2, coordinator_pb2, coordinator_pb2_grpc
from keychain.tls import TlsFiles

log = logging.getLogger(__name__)


def parse_addresses(text: str) -> list[str]:
    """`host:port,host:port` -> the list; ValueError on an empty list or an entry without a port."""
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if not addresses:
        raise ValueError("no coordinator address given")
    for a in addresses:
        host, sep, port = a.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"coordinator address {a!r} is not host:port")
    return addresses


class CoordinatorLink:
    def __init__(
        self,
        node: ChainNode,
        chain: str,
        advertise: str,
        addresses: list[str],
        *,
        interval: float = timing.HEARTBEAT_INTERVAL,
        rpc_timeout: float = timing.RPC_TIMEOUT,
        heartbeat_timeout: float = timing.HEARTBEAT_TIMEOUT,
        clock: Callable[[], float] | None = None,
        tls_files: TlsFiles | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("no coordinator address given")
        self.node = node
        self.chain = chain
        self.advertise = advertise
        self.addresses = addresses
        self.interval = interval
        self.rpc_timeout = rpc_timeout  # registration (the coordinator commits it first)
        self.heartbeat_timeout = heartbeat_timeout
        self.clock = clock or node.clock
        self._current = 0
        self.tls_files = tls_files
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.registered = False
        self.seq = 0  # heartbeats sent by this process
        self.revoked_at: float | None = None  # when a reply last revoked the lease (our clock)
        self.surrendered_below = 0  # every grant to a request before this heartbeat is ignored
        self.revoking = False  # the last reply revoked the lease

    def _stub(self) -> coordinator_pb2_grpc.CoordinatorStub:
        address = self.addresses[self._current]
        ch = self._channels.get(address)
        if ch is None:
            ch = tls.channel(address, self.tls_files)  # its messages are small: gRPC's size limit holds
            self._channels[address] = ch
        return coordinator_pb2_grpc.CoordinatorStub(ch)

    def _next_coordinator(self) -> None:
        self._current = (self._current + 1) % len(self.addresses)

    async def run(self) -> None:
        """Register, then heartbeat until cancelled."""
        # Registration retries: from one heartbeat interval, doubling, up to STREAM_RETRY_MAX (a node
        # that comes back after a partition registers again within about a second).
        cap = max(timing.STREAM_RETRY_MAX, self.interval)
        backoff = FailureStreak(Backoff(base=self.interval, cap=cap, floor=0.5), self.node.rng)
        try:
            while True:
                ok = await (self.heartbeat() if self.registered else self.register())
                if ok:
                    backoff.reset()
                    await asyncio.sleep(self.interval)
                else:
                    await asyncio.sleep(backoff.delay() if not self.registered else self.interval)
        finally:
            for ch in self._channels.values():
                await ch.close()

    async def register(self) -> bool:
        sent = self.clock()
        if self.node.driver.health.stalled(sent):
            log.info("not registering while storage is stalled node=%s", self.node.id)
            return False
        request = coordinator_pb2.RegisterRequest(chain=self.chain, node_id=self.node.id, address=self.advertise)
        try:
            reply = await self._stub().Register(request, timeout=self.rpc_timeout)
        except grpc.aio.AioRpcError as e:
            log.info("register failed node=%s coordinator=%s code=%s", self.node.id,
                     self.addresses[self._current], e.code().name)
            self._next_coordinator()
            return False
        self.node.driver.health.coordinator_answered(self.clock())
        if reply.error.code != coordinator_pb2.OK:
            log.warning("register refused node=%s code=%s message=%r", self.node.id,
                        coordinator_pb2.Code.Name(reply.error.code), reply.error.message)
            if reply.error.code == coordinator_pb2.UNAVAILABLE:
                self._next_coordinator()
            return False
        self.registered = True
        log.info("registered node=%s chain=%s epoch=%d", self.node.id, self.chain, reply.config.epoch)
        return self._adopt(reply.config, sent, reply.lease_ms)

    async def heartbeat(self) -> bool:
        status = self.node.status()
        self.seq += 1
        if self.clock() >= self.node.core.lease_until:
            self._lapsed()
        request = coordinator_pb2.HeartbeatRequest(
            chain=self.chain, node_id=self.node.id, epoch=status.epoch, last_seq=status.last_seq,
            committed_seq=status.committed_seq, caught_up=self.node.core.caught_up, reads=status.reads,
            writes=status.writes, in_sync=status.in_sync, link_health=link_report_to_pb(self.node.driver.link_report()),
            seq=self.seq, surrendered_below=self.surrendered_below,
            storage_alarm=status.storage_alarm, disk_free_bytes=status.disk_free_bytes,
        )
        sent = self.clock()
        try:
            reply = await self._stub().Heartbeat(request, timeout=self.heartbeat_timeout)
        except grpc.aio.AioRpcError as e:
            log.info("heartbeat failed node=%s coordinator=%s code=%s", self.node.id,
                     self.addresses[self._current], e.code().name)
            self._next_coordinator()
            return False
        self.node.driver.health.coordinator_answered(self.clock())
        if reply.error.code == coordinator_pb2.NOT_FOUND:
            log.warning("coordinator does not know this node; registering again node=%s message=%r", self.node.id,
                        reply.error.message)
            self._removed(reply, sent)
            self.registered = False
            return False
        if reply.error.code != coordinator_pb2.OK:
            log.info("heartbeat refused node=%s code=%s message=%r", self.node.id,
                     coordinator_pb2.Code.Name(reply.error.code), reply.error.message)
            self._next_coordinator()
            return False
        self.node.set_chain_alarms(frozenset(reply.storage_alarms))
        self.node.set_chain_clean_point(reply.clean_seq)
        self._follow_leader(reply.leader_address)
        return self._adopt(reply.config, sent, reply.lease_ms)

    def _follow_leader(self, address: str) -> None:
        """Send the next heartbeats to the leader a forwarded reply named, if it is one of ours."""
        if address and address != self.addresses[self._current] and address in self.addresses:
            log.debug("heartbeats go to the coordinator leader node=%s coordinator=%s", self.node.id, address)
            self._current = self.addresses.index(address)

    def _removed(self, reply: coordinator_pb2.HeartbeatReply, sent: float) -> None:
        """Not a member (removed, or the chain is gone): stop serving at once, before registering again.
        The reply carries the chain's configuration: adopting it (with no lease) leaves the node in a
        newer epoch in which it has no role, instead of serving reads at the old one until its lease lapses."""
        if reply.HasField("config"):
            self._adopt(reply.config, sent, lease_ms=0)
        else:
            self.node.renew_lease(sent)  # the lease ends now: nothing the coordinator knows renews it

    def _adopt(self, pb_config: chain_pb2.ChainConfig, sent: float, lease_ms: int) -> bool:
        """Follow a reply's configuration and lease; False (nothing renewed) if it is unusable."""
        if self.revoked_at is not None and sent < self.revoked_at:
            lease_ms = 0  # granted before we surrendered our lease: we said we would ignore it
        lease_until = sent + lease_ms / 1000
        try:
            config = wire.config_from_pb(pb_config)
        except ValueError as e:  # WireError or an invalid order of members
            log.error("unusable configuration from the coordinator node=%s error=%r", self.node.id, str(e))
            return False
        epoch = self.node.core.epoch
        if self.node.core.config is None or config.epoch > epoch:
            err = self.node.configure(config, lease_until)
            if not err.ok:
                log.error("coordinator configuration refused node=%s epoch=%d code=%s message=%r",
                          self.node.id, config.epoch, err.code.name, err.message)
        elif config.epoch == epoch:
            self.node.renew_lease(lease_until)
        else:  # a reply from a coordinator that lags behind: it renews nothing
            log.warning("stale configuration from the coordinator node=%s ours=%d theirs=%d",
                        self.node.id, epoch, config.epoch)
        if config.member(self.node.id) is None:
            log.warning("removed from the chain; registering again node=%s epoch=%d", self.node.id, config.epoch)
            self.registered = False
        elif lease_ms == 0:
            self._surrender()
        else:
            self.revoking = False
            self.surrendered_below = 0  # holding a lease again: a new revocation asks anew
        return True

    def _lapsed(self) -> None:
        """Our lease lapsed without a renewal: we hold none, so surrender it (see the module docstring);
        the grant to the heartbeat about to be sent is still honoured."""
        self.revoked_at = self.clock()
        self.surrendered_below = self.seq

    def _surrender(self) -> None:
        """The coordinator revoked our lease: it is already dropped (the reply renewed it to when the
        heartbeat was sent); from now on ignore any grant to an earlier request, and say so."""
        now = self.clock()
        self.node.renew_lease(min(now, self.node.core.lease_until))
        if not self.revoking:
            log.warning("lease revoked by the coordinator; surrendered node=%s", self.node.id)
        self.revoking = True
        self.revoked_at = now
        self.surrendered_below = self.seq + 1
