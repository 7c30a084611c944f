"""A chain node in the simulator: the real `ChainCore` over a `MemoryVersionStore`, driven by the
contract in `keychain.node.core`'s docstring, over virtual time and the simulated network.

- Ready handling: the production node driver (`keychain.node.driver`) over a `SimDisk`, whose sync
  takes the disk's latency of virtual time; the node itself is the driver's `Transport`. Inputs keep
  arriving while a sync runs (their outputs go into the next Ready, but for the acks and write
  replies `NodeDriver.release_early` lets out at once, as the gRPC node does). A crash loses every record not
  yet synced: the store is rebuilt on restart from those that were.
- Links: a Hello opens a new stream to the successor (closing the old one); batches go down it,
  welcomes and acks come back up it. A broken stream is reported to the core at both ends with
  `downlink_lost` / `uplink_lost`, and the node calls `retry_link()` on a steady backoff.
- Version queries are unary calls to the tail, answered exactly once: by the tail's reply or by an
  error when the call times out. State transfers are a stream of chunks from the predecessor.
- Watches: a watcher opens a stream and names its range and position; what it is sent is decided
  by the production `WatchCursor` over the driver's `WatchHistory` after every step that grew the
  history, and as a heartbeat every `WATCH_HEARTBEAT` (which also ends the streams of a node that
  stopped serving). A crash breaks them; the watcher resumes elsewhere.
- Coordinator: the node registers, then heartbeats every `HEARTBEAT_INTERVAL`, moving to the next
  coordinator when one fails to answer. A reply's configuration and lease go to `configure`; the
  lease runs from when the heartbeat was sent, on this node's clock. A node that learns it is no
  longer a member registers again (it rejoins as syncing).
- Gray failures, as the production node: every `KEEPALIVE_INTERVAL` the driver samples the links and
  keeps an idle downlink alive; each heartbeat carries the link report and its number; a reply that
  revokes the lease (lease 0, still a member) makes the node surrender it, and so does a lease
  that lapsed without a renewal (`keychain.node.coordinator_link`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keychain import timing
from keychain.coordinator.registry import ChainState
from keychain.coordinator.registry import MemberState as RegistryState
from keychain.node.driver import NodeDriver
from keychain.node.messages import (
    Batch,
    ChainConfig,
    Code,
    Error,
    Hello,
    Member,
    MemberState,
    VersionQueryReply,
    Welcome,
)
from keychain.node.versions import InstallKeys, MemoryVersionStore, StoreError
from keychain.node.watch_history import WatchCursor
from keychain.testing.sim_coordinator import CoordReply, CoordRequest
from keychain.testing.sim_invariants import Violation
from keychain.testing.sim_world import Process, Stream

if TYPE_CHECKING:  # annotations only
    from collections.abc import Generator

    from keychain.node.core import ChainCore, CoreOptions, Outbound, Ready, TransferStart, VersionQuery
    from keychain.node.messages import (
        Ack,
        Consistency,
        RangeRead,
        RangeReply,
        ReadReply,
        TransferChunk,
        WriteOp,
        WriteReply,
    )
    from keychain.node.versions import Record
    from keychain.node.watch_history import WatchBatch
    from keychain.testing.sim_cluster import Simulation

HEARTBEAT_TIMEOUT = 0.3  # seconds before a heartbeat counts as unanswered
VERSION_QUERY_TIMEOUT = 0.3
LINK_RETRY = 0.1  # the backoff between attempts to reopen a link
WATCH_HEARTBEAT = 0.2


def node_config(state: ChainState) -> ChainConfig:
    """The registry's view of a chain as the node core's ChainConfig."""
    return ChainConfig(state.name, state.epoch, tuple(
        Member(m.id, m.address, MemberState.ACTIVE if m.state is RegistryState.ACTIVE else MemberState.SYNCING)
        for m in state.members))


class SimDisk:
    """A node's disk: records are applied to the store at once, and become durable (kept across a
    crash) only when synced. The node driver's `Storage`."""

    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.durable: list[Record] = []  # synced records, replayed on restart
        self.unsynced: list[Record] = []  # applied since the last sync: a crash loses them

    def restore(self) -> MemoryVersionStore:
        """The store a restarted node finds: every synced record, nothing else."""
        self.unsynced.clear()
        store = MemoryVersionStore()
        store.apply(self.durable)
        return store

    def apply(self, records: list[Record]) -> None:
        node = self.node
        for r in records:
            if isinstance(r, InstallKeys):
                for kv in r.keys:
                    node.sim.inv.installed(node.id, kv)
        try:
            node.store.apply(records)
        except StoreError as exc:
            raise Violation("chain-core-error", f"{node.id}: its Ready cannot be persisted: {exc}") from exc
        self.unsynced.extend(records)

    def sync(self) -> None:
        self.durable.extend(self.unsynced)
        self.unsynced.clear()


class SimNode(Process):
    kind = "node"
    driver_class: type[NodeDriver] = NodeDriver  # tests substitute broken drivers

    def __init__(self, sim: Simulation, node_id: str, core_class: type[ChainCore], options: CoreOptions) -> None:
        super().__init__(sim.world, node_id)
        self.sim = sim
        self.address = f"{node_id}:7100"
        self.core_class = core_class
        self.options = options
        self.disk = SimDisk(self)
        self.coord = sim.world.rng.randrange(len(sim.coordinator_ids))
        self._ids = 0

    # ---- life cycle ----

    def start(self) -> None:
        self.incarnation += 1
        self.up = True
        self.store = self.disk.restore()
        self.core = self.core_class(self.id, self.store, self.options)
        self.driver = self.driver_class(self.core, self.disk, self, self.local)
        self.busy = False  # a Ready waits for its sync
        self._step: Generator[Ready, None, None] | None = None
        self.tickets: dict[int, tuple[Process, int, int]] = {}
        self.queries: dict[int, bool] = {}
        self.down_links: dict[str, Stream] = {}  # successor -> the stream we opened
        self.up_links: dict[str, Stream] = {}  # predecessor -> the stream it opened
        self.transfers_in: dict[str, Stream] = {}
        self.caught_up_epoch = -1
        self.registered = False
        self.heartbeats: dict[int, float] = {}  # rpc id -> local time sent
        self.seq = 0  # heartbeats sent by this incarnation
        self.revoked_at: float | None = None  # a reply revoked the lease then: earlier grants are ignored
        self.surrendered_below = 0
        self.timer(timing.KEEPALIVE_INTERVAL, self._tick)
        self.commit_seen = self.store.state().committed_seq
        self.watches: dict[int, tuple[Stream, WatchCursor]] = {}  # by stream id
        self.watch_seen = self.driver.history.last
        self.watch_heartbeats = False  # the heartbeat timer runs once a watch has been opened
        self.timer(self.world.rng.uniform(0, timing.HEARTBEAT_INTERVAL), self._heartbeat)
        self.timer(LINK_RETRY, self._retry_link)
        self._pump()

    def crash(self) -> None:
        self.up = False
        self.sim.net.process_down(self)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # ---- Ready handling: the node driver over the simulated disk ----

    def _pump(self) -> None:
        if self.busy and self.up:
            self.driver.release_early()  # acks and write replies do not wait for the sync under way
        self._step_driver()
        if self.up and self.driver.history.last != self.watch_seen:
            self.watch_seen = self.driver.history.last
            self._push_watches(heartbeat=False)

    def _step_driver(self) -> None:
        while not self.busy and self.up:
            self._observe_commit()
            if not self.driver.has_ready():
                return
            step = self.driver.step()
            if next(step, None) is None:
                continue  # released at once: no sync was due
            self._observe_commit()  # nothing new, unless the driver released before the sync
            self.busy = True
            self._step = step
            self.world.after(self.sync_delay(), self._fire, self.incarnation, self._synced, ())
            return

    def _synced(self) -> None:
        self.disk.sync()
        self.busy = False
        step, self._step = self._step, None
        if step is not None:
            next(step, None)
        self._pump()

    def _observe_commit(self) -> None:
        c = self.core.committed_seq
        if c <= self.commit_seen:
            return
        st = self.store.state()
        lo = max(self.commit_seen, st.log_start) + 1
        hi = min(c, st.last_seq)
        if lo <= hi:
            inv = self.sim.inv
            for e in self.store.entries(lo, hi):
                inv.chain_committed(self.id, e)
        self.commit_seen = max(self.commit_seen, hi)

    # ---- the driver's Transport: a Ready's outputs onto the simulated network ----

    def send_link(self, message: Outbound) -> None:
        net = self.sim.net
        peer = self.sim.nodes.get(message.to)
        if peer is None:
            return
        body = message.body
        if isinstance(body, Hello):
            old = self.down_links.get(message.to)
            if old is not None:
                net.close(old)
            s = net.open(self, peer, self._down_broken, peer._up_broken)
            self.down_links[message.to] = s
            net.stream_send(s, True, "hello", peer.on_hello, s, self.id, body)
        elif isinstance(body, Batch):
            s = self.down_links.get(message.to)
            if s is not None:
                net.stream_send(s, True, "batch", peer.on_batch, s, self.id, body)
        else:
            s = self.up_links.get(message.to)
            if s is not None:
                fn = peer.on_welcome if isinstance(body, Welcome) else peer.on_ack
                net.stream_send(s, False, type(body).__name__.lower(), fn, s, self.id, body)

    def send_version_query(self, query: VersionQuery) -> None:
        self.queries[query.query_id] = True
        self.timer(VERSION_QUERY_TIMEOUT, self._query_timeout, query.query_id)
        peer = self.sim.nodes.get(query.to)
        if peer is not None:
            self.sim.net.send(self, peer, "vquery", peer.on_version_query, self, self.incarnation, query.query_id,
                              query.epoch, query.keys)

    def start_transfer(self, start: TransferStart) -> None:
        self.timer(self.world.rng.uniform(0.005, 0.05), self._start_transfer, start.from_id, start.epoch)

    def release_reply(self, ticket: int, reply: WriteReply | ReadReply | RangeReply) -> None:
        dest = self.tickets.pop(ticket, None)
        if dest is not None:
            self._respond(dest, reply)

    def report_caught_up(self, through: int, epoch: int) -> None:
        self.caught_up_epoch = epoch

    # ---- links ----

    def _down_broken(self, s: Stream) -> None:
        peer = s.b.id
        if self.down_links.get(peer) is s:
            del self.down_links[peer]
            self.core.downlink_lost(peer)
            self._pump()

    def _up_broken(self, s: Stream) -> None:
        peer = s.a.id
        if self.up_links.get(peer) is s:
            del self.up_links[peer]
            self.core.uplink_lost(peer)
            self._pump()

    def _tick(self) -> None:
        self.timer(timing.KEEPALIVE_INTERVAL, self._tick)
        self.driver.tick()
        self._pump()

    def _retry_link(self) -> None:
        self.timer(LINK_RETRY * self.world.rng.uniform(0.8, 1.2), self._retry_link)
        self.core.retry_link()
        self._pump()

    def on_hello(self, s: Stream, sender: str, hello: Hello) -> None:
        old = self.up_links.get(sender)
        if old is not None and old is not s:
            self.sim.net.close(old)
        self.up_links[sender] = s
        self.core.on_hello(sender, hello)
        self._pump()

    def on_batch(self, s: Stream, sender: str, batch: Batch) -> None:
        if self.up_links.get(sender) is s:
            self.core.on_batch(sender, batch)
            self._pump()

    def on_welcome(self, s: Stream, sender: str, welcome: Welcome) -> None:
        if self.down_links.get(sender) is s:
            self.core.on_welcome(sender, welcome)
            self._pump()

    def on_ack(self, s: Stream, sender: str, ack: Ack) -> None:
        if self.down_links.get(sender) is s:
            self.core.on_ack(sender, ack)
            self._pump()

    # ---- version queries ----

    def on_version_query(self, caller: SimNode, caller_inc: int, qid: int, epoch: int, keys: tuple[bytes, ...]
                         ) -> None:
        reply = self.driver.version_query(epoch, list(keys))
        if caller.alive(caller_inc):
            self.sim.net.send(self, caller, "vreply", caller.on_version_reply, qid, reply)
        self._pump()

    def on_version_reply(self, qid: int, reply: VersionQueryReply) -> None:
        if self.queries.pop(qid, None):
            self.core.on_version_reply(qid, reply)
            self._pump()

    def _query_timeout(self, qid: int) -> None:
        if self.queries.pop(qid, None):
            self.core.on_version_reply(qid, VersionQueryReply(Error(Code.UNAVAILABLE, "version query timed out")))
            self._pump()

    # ---- state transfer ----

    def _start_transfer(self, from_id: str, epoch: int) -> None:
        peer = self.sim.nodes.get(from_id)
        if peer is None:
            return
        old = self.transfers_in.get(from_id)
        if old is not None:
            self.sim.net.close(old)
        s = self.sim.net.open(self, peer, self._transfer_broken, None)
        self.transfers_in[from_id] = s
        self.sim.net.stream_send(s, True, "transfer", peer.on_transfer_request, s, self.id, epoch)

    def on_transfer_request(self, s: Stream, to_id: str, epoch: int) -> None:
        err = self.core.begin_transfer(to_id, epoch)
        if err.ok:
            self._send_chunk(s, to_id)
        else:
            self.sim.net.stream_send(s, False, "transfer-refused", self.sim.nodes[to_id].on_transfer_refused, s,
                                     self.id)
        self._pump()

    def _send_chunk(self, s: Stream, to_id: str) -> None:
        if s.broken:
            return
        peer = self.sim.nodes[to_id]
        try:
            chunk = self.core.transfer_chunk(to_id)
        except ValueError:  # the session ended (a new configuration, a lost link)
            self.sim.net.stream_send(s, False, "transfer-refused", peer.on_transfer_refused, s, self.id)
            return
        self.sim.net.stream_send(s, False, "chunk", peer.on_transfer_chunk, s, self.id, chunk)
        if not chunk.last:
            self.timer(0.001, self._send_chunk, s, to_id)
        self._pump()

    def on_transfer_chunk(self, s: Stream, sender: str, chunk: TransferChunk) -> None:
        if self.transfers_in.get(sender) is not s:
            return
        if chunk.last:
            del self.transfers_in[sender]
            self.sim.net.close(s)
        self.core.on_transfer_chunk(sender, chunk)
        self._pump()

    def on_transfer_refused(self, s: Stream, sender: str) -> None:
        self._transfer_broken(s)

    def _transfer_broken(self, s: Stream) -> None:
        sender = s.b.id
        if self.transfers_in.get(sender) is s:
            del self.transfers_in[sender]
            self.sim.net.close(s)
            self.timer(self.world.rng.uniform(0.02, 0.1), self._transfer_failed, sender)

    def _transfer_failed(self, sender: str) -> None:
        self.core.transfer_failed(sender)
        self._pump()

    # ---- clients ----

    def on_write(self, caller: Process, caller_inc: int, rpc_id: int, epoch: int, ops: tuple[WriteOp, ...]) -> None:
        ticket = self._next_id()
        reply = self.driver.write(ticket, epoch, list(ops))
        if reply is None:
            self.tickets[ticket] = (caller, caller_inc, rpc_id)
        else:
            self._respond((caller, caller_inc, rpc_id), reply)
        self._pump()

    def on_read(self, caller: Process, caller_inc: int, rpc_id: int, epoch: int, key: bytes,
                consistency: Consistency) -> None:
        ticket = self._next_id()
        reply = self.driver.read(ticket, epoch, key, consistency)
        if reply is None:
            self.tickets[ticket] = (caller, caller_inc, rpc_id)
        else:
            self._respond((caller, caller_inc, rpc_id), reply)
        self._pump()

    def on_probe(self, caller: Process, caller_inc: int, rpc_id: int) -> None:
        """A proxy's status probe (proxy/reachability.py): any live node answers it at once."""
        if caller.alive(caller_inc):
            self.sim.net.send(self, caller, "probe-reply", caller.on_probe_reply, rpc_id)

    # ---- watches ----

    def on_watch(self, s: Stream, watcher: str, epoch: int, start: bytes, end: bytes, after: int) -> None:
        cursor = WatchCursor(start, end, after)
        refused = cursor.gate(self.core, self.local(), epoch)
        if refused is not None:
            self._send_watch(s, refused)
            return
        self.watches[s.id] = (s, cursor)
        self._push_watches(heartbeat=True, only=s.id)
        if not self.watch_heartbeats:
            self.watch_heartbeats = True
            self.timer(WATCH_HEARTBEAT, self._watch_heartbeat)

    def _watch_heartbeat(self) -> None:
        self.timer(WATCH_HEARTBEAT, self._watch_heartbeat)
        self._push_watches(heartbeat=True)

    def _push_watches(self, heartbeat: bool, only: int | None = None) -> None:
        now = self.local()
        for sid in [only] if only is not None else list(self.watches):
            s, cursor = self.watches[sid]
            while not s.broken:
                batch = cursor.gate(self.core, now) or cursor.next(self.driver.history, heartbeat)
                if batch is None:
                    break
                self._send_watch(s, batch)
                if cursor.done or not batch.changes:
                    break
            if s.broken or cursor.done:
                del self.watches[sid]

    def _send_watch(self, s: Stream, batch: WatchBatch) -> None:
        watcher = s.a
        self.sim.net.stream_send(s, False, "watch-batch", watcher.on_watch_batch, s, self.id,  # type: ignore[attr-defined]
                                 self.core.epoch, batch)

    def on_range(self, caller: Process, caller_inc: int, rpc_id: int, epoch: int, r: RangeRead) -> None:
        ticket = self._next_id()
        reply = self.driver.range(ticket, epoch, r)
        if reply is None:
            self.tickets[ticket] = (caller, caller_inc, rpc_id)
        else:
            self._respond((caller, caller_inc, rpc_id), reply)
        self._pump()

    def _respond(self, dest: tuple[Process, int, int], reply: WriteReply | ReadReply | RangeReply) -> None:
        caller, inc, rpc_id = dest
        if caller.alive(inc):
            self.sim.net.send(self, caller, "kv-reply", caller.on_kv_reply, rpc_id, self.id, reply)

    # ---- the coordinator ----

    def _heartbeat(self) -> None:
        self.timer(timing.HEARTBEAT_INTERVAL, self._heartbeat)
        core = self.core
        chain = self.sim.chain
        if self.registered:
            self.seq += 1
            if self.local() >= core.lease_until:  # lapsed: surrendered, as the production node does
                self.revoked_at = self.local()
                self.surrendered_below = self.seq
            req = CoordRequest("heartbeat", chain, self.id, epoch=core.epoch,
                               caught_up=self.caught_up_epoch == core.epoch, in_sync=core.in_sync,
                               links=self.driver.link_report(), committed_seq=core.committed_seq, seq=self.seq,
                               surrendered_below=self.surrendered_below)
        elif self.driver.health.stalled(self.local()):
            return  # not while its storage is stalled, as the production node (node/link_health.py)
        else:
            req = CoordRequest("register", chain, self.id, address=self.address)
        rid = self._next_id()
        self.heartbeats[rid] = self.local()
        coord = self.sim.coordinators[self.sim.coordinator_ids[self.coord % len(self.sim.coordinator_ids)]]
        self.sim.net.send(self, coord, "coord-req", coord.on_request, self, self.incarnation, rid, req)
        self.timer(HEARTBEAT_TIMEOUT, self._heartbeat_timeout, rid)

    def _heartbeat_timeout(self, rid: int) -> None:
        if self.heartbeats.pop(rid, None) is not None:
            self.coord += 1

    def on_coord_reply(self, rid: int, reply: CoordReply) -> None:
        sent = self.heartbeats.pop(rid, None)
        if sent is None:
            return
        self.driver.health.coordinator_answered(self.local())
        if not reply.error and reply.chain is not None:
            self.registered = True
            lease = reply.lease if self.revoked_at is None or sent >= self.revoked_at else 0.0
            self._adopt(reply.chain, sent + lease)
            if lease == 0 and reply.chain.member(self.id) is not None:  # revoked: surrender it
                self.core.renew_lease(min(self.local(), self.core.lease_until))
                self.revoked_at = self.local()
                self.surrendered_below = self.seq + 1
            elif lease > 0:
                self.surrendered_below = 0  # holding a lease again: a new revocation asks anew
            self.core.set_chain_clean_point(reply.clean_seq)
        elif reply.error == "NOT_FOUND":
            self.registered = False
            if reply.chain is not None and self.core.config is not None:
                self._adopt(reply.chain, sent)  # no longer a member: stop serving at once
        else:
            self.coord += 1
        self._pump()

    def _adopt(self, state: ChainState, lease_until: float) -> None:
        core = self.core
        if core.config is not None and state.epoch < core.epoch:
            return
        cfg = node_config(state)
        if core.config is None or state.epoch > core.epoch:
            self.world.note("config", self.id, state.epoch, " ".join(
                m.id + ("" if m.state is RegistryState.ACTIVE else "(s)") for m in state.members))
        err = core.configure(cfg, lease_until)
        if not err.ok:
            raise Violation("epoch-unique", f"{self.id} refused configuration {state.describe()}: {err.message}")

    def describe(self) -> dict[str, Any]:
        c = self.core
        return {"id": self.id, "up": self.up, "epoch": c.epoch, "role": c.role.value, "last": c.last_seq,
                "committed": c.committed_seq, "in_sync": c.in_sync}
