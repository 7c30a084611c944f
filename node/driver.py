"""The node driver: the one loop that turns a `ChainCore`'s Readys into effects, in the order the
Ready contract demands (see `keychain.node.core`):

    rd = core.ready()
    storage.apply(rd.persist)          # applied, not yet durable
    sync storage if rd.must_sync       # one sync for everything applied so far: group commit
    send rd.messages, start rd.version_queries and rd.transfers, release rd.replies
    history.catch_up(core)             # the committed stream that watches read (watch_history)
    core.advance()

Acks and write replies need no Ready of their own (`ChainCore.early`): `release_early()` sends them at
once, after every advance and whenever the shell has fed the core inputs while a sync runs.

The gRPC node (`keychain.node.server`), the simulator's node (`keychain.testing.sim_node`) and the
scenario harness all drive their core with this class, over their own `Storage` (RocksDB, the
simulated disk, a store in memory) and `Transport` (gRPC streams, the simulated network, queues a
test delivers by hand). What differs between them is only how long a sync takes: the production
shell awaits an fsync in a thread, the simulator a disk latency of virtual time, a test nothing. So
`step()` is a generator that yields the Ready at the moment its sync is due and resumes once the
caller has made storage durable; `step_now()` does the same with a synchronous `storage.sync()`.

The driver also keeps the node's link health (`keychain.node.link_health`): it times every sync and
every Batch sent, and `tick()` (the shell calls it every `timing.KEEPALIVE_INTERVAL`) samples the
core's links and has the core send a keepalive on an idle downlink. `link_report()` is what the
node's heartbeat tells the coordinator.

A storage that cannot take a Ready's records now (its disk is full) raises `StorageFull` from `apply`
having written none of them. The Ready is then held, not lost and not half-applied: `step()` raises
`StorageFull` to the caller, and every later `step()` tries the held Ready's records again before the
core is asked for anything new (`core.ready()` is not called again before `advance()`, so the core
keeps gathering inputs meanwhile, and reads of committed data are still answered).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Protocol

from keychain.node.core import ChainCore, Outbound, Ready, TransferStart, VersionQuery
from keychain.node.link_health import LinkHealth, LinkReport, LinkSample
from keychain.node.messages import (
    Batch,
    Consistency,
    RangeRead,
    RangeReply,
    ReadReply,
    VersionQueryReply,
    WriteOp,
    WriteReply,
)
from keychain.node.versions import Record, StorageFull
from keychain.node.watch_history import WatchHistory

__all__ = ["Clock", "NodeDriver", "Storage", "StorageFull", "Transport"]


class Storage(Protocol):
    """Where a Ready's records go. `apply` need not be durable; `sync` makes durable, in order,
    every record applied before it."""

    def apply(self, records: list[Record]) -> None: ...

    def sync(self) -> None: ...


class Transport(Protocol):
    """Where a Ready's outputs go: each call hands one output over and returns at once."""

    def send_link(self, message: Outbound) -> None:
        """Send a link message (a Hello opens a new stream to its peer)."""

    def send_version_query(self, query: VersionQuery) -> None:
        """Ask the tail; the core must get exactly one `on_version_reply` for it, an error if the call fails."""

    def start_transfer(self, start: TransferStart) -> None:
        """Open a Transfer stream and feed its chunks to `on_transfer_chunk` (`transfer_failed` if it breaks)."""

    def release_reply(self, ticket: int, reply: WriteReply | ReadReply | RangeReply) -> None:
        """Answer the client request the core knows by `ticket`."""

    def report_caught_up(self, through: int, epoch: int) -> None:
        """A syncing node is level with its predecessor through `through`, in `epoch` (the Ready's)."""


class Clock(Protocol):
    """The node's clock: seconds, monotonic. Leases are read against it."""

    def __call__(self) -> float: ...


class NodeDriver:
    """Drives one core: inputs that depend on the time read the clock here, and every Ready goes
    through `step()` (see the module docstring)."""

    def __init__(self, core: ChainCore, storage: Storage, transport: Transport, clock: Clock,
                 history: WatchHistory | None = None, health: LinkHealth | None = None) -> None:
        self.core = core
        self.storage = storage
        self.transport = transport
        self.clock = clock
        # A Ready the storage refused (StorageFull) with the core's epoch when it was taken: retried first.
        self.held: tuple[Ready, int] | None = None
        # The committed changes watches are served from, fed before every advance() (while the
        # entries above the store's commit point are still in the core's memory); a restarted node
        # starts with what its store's retained log still holds.
        self.history = history if history is not None else WatchHistory.rebuilt(core)
        self.health = health or LinkHealth()

    # ---- the Ready loop ----

    def has_ready(self) -> bool:
        """Whether `step()` has a Ready to handle (a held one included)."""
        return self.held is not None or self.core.has_ready()

    def step(self) -> Generator[Ready, None, None]:
        """Handle the core's next Ready, if it has one: persist it, yield it once if it must be synced
        (the caller makes `storage` durable, then resumes this generator), then release its outputs
        and advance the core. A Ready that needs no sync (commits and trims alone, `Ready.must_sync`)
        is released at once: the next sync covers its records. Raises `StorageFull` if the storage
        refused the records (the Ready is held and retried by the next `step()`)."""
        if self.held is not None:
            rd, epoch = self.held
        elif self.core.has_ready():
            rd = self.core.ready()
            epoch = self.core.epoch  # a configure may land while the sync runs: the Ready's own epoch
        else:
            return
        if rd.persist:
            self.held = (rd, epoch)
            self.storage.apply(rd.persist)  # StorageFull: nothing written, the Ready stays held
        self.held = None
        if rd.must_sync:
            self.health.sync_begun(self.clock())
            yield rd
            self.health.sync_done(self.clock())
        self.release(rd, epoch)

    def step_now(self) -> bool:
        """`step()` with a synchronous `storage.sync()`: one Ready handled completely. False if the core
        had none."""
        if not self.has_ready():
            return False
        for _ in self.step():
            self.storage.sync()
        return True

    def release(self, rd: Ready, epoch: int) -> None:
        """The Ready's records are durable (or need not be): its outputs leave, and the core learns it
        with `advance()`. `epoch` is the core's epoch when the Ready was taken."""
        t = self.transport
        batch_sent = False
        for out in rd.messages:
            t.send_link(out)
            batch_sent = batch_sent or isinstance(out.body, Batch)
        if batch_sent:
            self.health.batch_sent(self.clock())
        for q in rd.version_queries:
            t.send_version_query(q)
        for start in rd.transfers:
            t.start_transfer(start)
        for ticket, reply in rd.replies:
            t.release_reply(ticket, reply)
        if rd.caught_up is not None:
            t.report_caught_up(rd.caught_up, epoch)
        self.history.catch_up(self.core)
        self.core.advance()
        self.release_early()  # the tail's ack of what this Ready made durable leaves now, not a sync later

    def release_early(self) -> bool:
        """Send the acks and write replies the core lets out of turn (`ChainCore.early`): the shell calls
        this whenever inputs arrived while a sync runs, so an ack or a commit does not wait for the sync
        of entries it does not depend on, nor for the next Ready's. Returns whether anything left."""
        core = self.core
        if not core.has_early():
            return False
        rd = core.early()
        self.history.catch_up(core)  # a write acknowledged is a write watchers may already ask for
        for out in rd.messages:
            self.transport.send_link(out)
        for ticket, reply in rd.replies:
            self.transport.release_reply(ticket, reply)
        return True

    # ---- inputs that read the clock ----

    def write(self, ticket: int, epoch: int, ops: list[WriteOp]) -> WriteReply | None:
        """A client's writes: the reply now, or None and later through `release_reply(ticket, ...)`."""
        return self.core.client_write(ticket, epoch, ops, self.clock())

    def read(self, ticket: int, epoch: int, key: bytes, consistency: Consistency) -> ReadReply | None:
        """A client's read: the reply now, or None and later through `release_reply(ticket, ...)`."""
        return self.core.client_read(ticket, epoch, key, consistency, self.clock())

    def range(self, ticket: int, epoch: int, r: RangeRead) -> RangeReply | None:
        """A client's range read: the page now, or None and later through `release_reply(ticket, ...)`."""
        return self.core.client_range(ticket, epoch, r, self.clock())

    def version_query(self, epoch: int, keys: list[bytes]) -> VersionQueryReply:
        """A predecessor asks us, the tail, for the committed versions of `keys`."""
        return self.core.on_version_query(epoch, keys, self.clock())

    # ---- link health ----

    def tick(self) -> None:
        """Every `timing.KEEPALIVE_INTERVAL`: sample the links, and send a keepalive down an idle
        downlink (the caller then handles the Ready it makes)."""
        now = self.clock()
        self.health.observe(now, self.link_sample())
        if self.health.keepalive_due(now):
            self.core.keepalive()
            self.health.batch_sent(now)  # asked for: one keepalive per interval, even while a sync runs

    def link_report(self) -> LinkReport:
        """The link-health report for a heartbeat, as of now."""
        now = self.clock()
        self.health.observe(now, self.link_sample())
        return self.health.report(now)

    def link_sample(self) -> LinkSample:
        core = self.core
        return LinkSample(
            epoch=core.epoch, successor=core.succ, downlink=core.down.state, sent_through=core.down.sent_through,
            acked=core.down.acked, predecessor=core.pred, received=core.up.received,
            installing=core.up.transfer_from is not None, last_seq=core.last_seq, persisted_seq=core.persisted_seq,
        )
