"""The chain node's shell: a grpc.aio server around one `ChainCore` and its RocksDB store.

Everything that touches the core runs on the event loop's thread, so core calls never interleave:
RPC handlers hand their input to the core directly (each call is short and synchronous) and wake the
driver task. The driver task alone turns the core's output into effects, through the node driver
(`keychain.node.driver`: persist, sync, send, advance) with this node as its `Transport` and the
RocksDB store as its `Storage`; what it adds is how a sync is awaited:

    for rd in driver.step():                   # the Ready's records are applied (memtable + WAL)
        await to_thread(store.sync)            # ONE fsync for everything applied: group commit
                                               # (not asked for when rd.must_sync is False)

While the fsync runs, new requests keep stepping the core and pile up in its next Ready, so under
load one fsync covers many writes, and many writes travel in each link message.

Links. The upstream node opens one long-lived bidirectional `Link` stream to its successor: a Hello
first, then batches of entries down; a Welcome first, then cumulative acks up. A stream that breaks
(or is refused) is reported to the core, which decides what to resend after the next handshake; the
shell reopens it after an exponential backoff with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from keychain.node import wire
from keychain.node.core import (
    ChainCore,
    CoreOptions,
    LinkState,
    Outbound,
    Ready,
    TransferStart,
    VersionQuery,
)
from keychain.node.disk_alarm import DEFAULT_HIGH_WATER, DiskAlarm, DiskSample, HighWater, records_bytes
from keychain.node.driver import NodeDriver, StorageFull
from keychain.node.links import ENTRY_FRAMING_BYTES, TXN_OP_FRAMING_BYTES
from keychain.node.messages import (
    OK,
    Ack,
    Batch,
    ChainConfig,
    Code,
    Consistency,
    Error,
    Hello,
    NodeStatus,
    RangeRead,
    RangeReply,
    ReadReply,
    VersionQueryReply,
    Welcome,
    WriteOp,
    WriteReply,
    WriteResult,
)
from keychain.node.metrics import NodeMetrics
from keychain.node.storage import RocksVersionStore
from keychain.node.sync_thread import SyncThread
from keychain.node.transfer_rate import DEFAULT_TRANSFER_RATE_MB, transfer_bucket
from keychain.node.versions import AppendEntries, Record
from keychain.node.watch_history import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHANGES, WatchHistory
from keychain.node.watch_hub import HEARTBEAT, WatchCollector, WatchHub, batch_to_pb

from keychain import channel_policy, timing, tls
from keychain.backoff import Backoff, FailureStreak
from keychain.proto import chain_pb2, chain_pb2_grpc
from keychain.tls import TlsFiles

log = logging.getLogger(__name__)

SERVICE_NAME = "keychain.chain.ChainNode"

# The server pings its callers too (a predecessor gone silent is noticed); how channels reconnect
# and ping is keychain.channel_policy's, applied by keychain.tls.channel.
_SERVER_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
# Reopening a broken link or transfer stream: at least half of a bound that doubles per failure in
# a row, so a peer that just refused us is not asked again at once, and never more than
# STREAM_RETRY_MAX, so a healed path is used again within about a second.
RECONNECT_BACKOFF = Backoff(base=0.05, cap=timing.STREAM_RETRY_MAX, floor=0.5)

# How often the free space of the data volume is sampled (one statvfs call), and how soon a Ready held
# for want of space is tried again: writes resume within about this much of space coming back.
DISK_SAMPLE_INTERVAL = 0.1
# How long a Ready of lazy records alone may wait for the next Ready to go with (ChainNode._hold_lazy):
# about the time between two batches under load, so the store's commit point lags by at most that.
LAZY_READY_HOLD = 0.02
# A Ready is written on the watcher's last sample, with no fresh one, while that sample is at most this
# old and leaves, after everything applied since, at least twice the high-water mark above the reserve
# (see _RoomyStore.apply); otherwise a fresh sample decides.
DISK_SAMPLE_TRUSTED_FOR = 2 * DISK_SAMPLE_INTERVAL
# While the alarm is raised the store is compacted at most this often, so that deletes and collected
# garbage give their space back (RocksDB would get to it by itself, but later).
COMPACT_INTERVAL = 2.0


def volume_sample(path: str) -> DiskSample:
    """Free (available to this process) and total bytes of the volume holding `path`."""
    st = os.statvfs(path)
    return DiskSample(free=st.f_bavail * st.f_frsize, total=st.f_blocks * st.f_frsize)


class _RoomyStore:
    """The store as the driver sees it: a Ready is applied only while the volume has room for it
    (`DiskAlarm.may_persist`); otherwise `StorageFull` with nothing written.

    Which sample decides: a statvfs call on every Ready costs as much as a small Ready's own write, so
    the watcher's last sample is trusted while it is recent and, less everything applied since (at the
    `records_bytes` estimate) and this Ready, still leaves twice the high-water mark above the reserve:
    far from the alarm, let alone from a full disk. Closer to it (or on an old sample) a fresh sample
    decides, as the full-disk tests expect."""

    def __init__(self, store: RocksVersionStore, alarm: DiskAlarm, sample: Callable[[], DiskSample],
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.alarm = alarm
        self.sample = sample
        self.clock = clock
        self.compacting = False  # a compaction runs in a thread: a wedged store is not reopened under it
        self.last: DiskSample | None = None  # the newest sample of the volume, the watcher's or our own
        self.sampled_at = -math.inf  # when it was taken
        self.applied_since = 0  # bytes applied since then, by the records_bytes estimate
        self.fresh_samples = 0  # samples taken for a Ready, the watcher's being too old or too tight

    def observed(self, sample: DiskSample) -> None:
        """A sample of the volume taken just now."""
        self.last = sample
        self.sampled_at = self.clock()
        self.applied_since = 0

    def apply(self, records: list[Record]) -> None:
        if self.compacting and self.store.wedged:
            raise StorageFull("the store is compacting")
        needed = records_bytes(records)
        last = self.last
        if last is None or not self._ample(last, needed):
            self.fresh_samples += 1
            last = self.sample()
            self.observed(last)
        if not self.alarm.may_persist(self.applied_since + needed, last):
            raise StorageFull(f"{needed} bytes to write, {last.free - self.applied_since} free")
        self.store.apply(records)
        self.applied_since += needed

    def _ample(self, last: DiskSample, needed: int) -> bool:
        if self.clock() - self.sampled_at > DISK_SAMPLE_TRUSTED_FOR:
            return False
        margin = self.alarm.reserve(last.total) + 2 * self.alarm.high_water.mark(last.total)
        return last.free - self.applied_since - needed >= margin

    def sync(self) -> None:
        self.store.sync()


# gRPC's default message limit, which proxies size their batched write requests for.
WRITE_REQUEST_BYTES = 4 << 20


def max_message_bytes(options: CoreOptions) -> int:
    """The largest message a node sends or accepts: a client's write request, or the largest link
    batch or transfer chunk the core can emit (a full batch, or one entry of the largest size alone,
    plus the framing of each entry)."""
    items = max(options.max_batch_entries, options.transfer_chunk_keys)
    largest_entry = options.max_key_bytes + options.max_value_bytes + options.max_request_id_bytes
    largest_txn = options.max_txn_bytes + options.max_request_id_bytes + options.max_txn_ops * TXN_OP_FRAMING_BYTES
    link = max(options.max_batch_bytes, largest_entry, largest_txn) + items * ENTRY_FRAMING_BYTES
    outcomes = options.transfer_chunk_keys * (options.max_request_id_bytes + ENTRY_FRAMING_BYTES)
    # A range page: the core bounds its keys, values and framing by max_range_bytes.
    return max(WRITE_REQUEST_BYTES, link, outcomes, options.max_range_bytes) + 4096  # + the enclosing message's own fields


def grpc_options(options: CoreOptions) -> list[tuple[str, int]]:
    """Peer-channel options: message size bounded by what the core can produce."""
    limit = max_message_bytes(options)
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def server_grpc_options(options: CoreOptions) -> list[tuple[str, int]]:
    """The node server's options: the channels' message size, its own pings, and its peers' pings accepted."""
    return channel_policy.server_options([*grpc_options(options), *_SERVER_KEEPALIVE])


@dataclass
class _DownLink:
    """Our stream to the successor `peer`: we send LinkDown, it answers LinkUp."""

    peer: str
    queue: asyncio.Queue[chain_pb2.LinkDown | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


@dataclass
class _UpLink:
    """The stream our predecessor `peer` opened to us: Welcome and Ack messages go up it."""

    peer: str
    queue: asyncio.Queue[chain_pb2.LinkUp | None] = field(default_factory=asyncio.Queue)


class ChainNode:
    """One chain node: the core, its store, the gRPC server and the tasks that move messages."""

    def __init__(
        self,
        node_id: str,
        store: RocksVersionStore,
        options: CoreOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        static: bool = False,
        tls_files: TlsFiles | None = None,
        disk_high_water: HighWater | None = None,
        disk_sample: Callable[[], DiskSample] | None = None,
        watch_history_changes: int = DEFAULT_MAX_CHANGES,
        watch_history_bytes: int = DEFAULT_MAX_BYTES,
        watch_heartbeat: float = HEARTBEAT,
        transfer_rate_mb: float = DEFAULT_TRANSFER_RATE_MB,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.id = node_id
        # Mutual TLS on the node's server and on its channels to other nodes (None: plaintext).
        self.tls_files = tls_files
        # Configured by the Configure RPC (no coordinator). A coordinator-managed node refuses that RPC:
        # a stray call could give it any epoch and a lease without end.
        self.static = static
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self.core = ChainCore(node_id, store, options)
        # The state transfers we send share one pace (keychain.node.transfer_rate), measured on `clock`
        # and waited out with `sleep`; one largest chunk may go out at once.
        self.transfer_bucket = transfer_bucket(transfer_rate_mb, self.core.options.max_batch_bytes)
        self._sleep = sleep
        # The storage alarm (keychain.node.disk_alarm): our own, from samples of the data volume, and the
        # chain's, as the coordinator relays them; the core refuses writes at the head while any is raised.
        self.disk_alarm = DiskAlarm(disk_high_water or HighWater.parse(DEFAULT_HIGH_WATER))
        self.disk_sample = disk_sample or (lambda: volume_sample(str(store.path)))
        self._chain_alarms: frozenset[str] = frozenset()
        self._persist_held = False  # the driver holds a Ready the disk had no room for
        self._roomy = _RoomyStore(store, self.disk_alarm, self.disk_sample, clock)
        self._compacted_at = -math.inf
        self._compaction: asyncio.Future[None] | None = None  # the compaction running in a thread, if any
        history = WatchHistory.rebuilt(self.core, watch_history_changes, watch_history_bytes)
        self.driver = NodeDriver(self.core, self._roomy, self, clock, history)
        self.metrics = NodeMetrics(self.status, store.wal_syncs)
        self.watches = WatchHub(self.core, history, clock, watch_heartbeat)
        self.metrics.registry.register(WatchCollector(self.watches, node_id, store.chain))
        self.health = health.aio.HealthServicer()
        # Room for a ReadBatch reply's results: the message limit less the enclosing fields.
        self._reply_limit = max_message_bytes(self.core.options) - 4096
        self._server: grpc.aio.Server | None = None
        self._wake = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tickets = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[WriteReply | ReadReply | RangeReply]] = {}
        self._write_ops: dict[int, int] = {}  # waiting write tickets: how many ops each carries
        self._downlinks: dict[str, _DownLink] = {}
        self._uplinks: dict[str, _UpLink] = {}
        self._link_backoff: dict[str, FailureStreak] = {}
        self._transfers_in: dict[str, asyncio.Task[None]] = {}
        self._transfer_backoff: dict[str, FailureStreak] = {}
        self._syncing: asyncio.Future[None] | None = None  # the fsync in flight, if any
        self._lazy_timer: asyncio.TimerHandle | None = None  # ends the hold of a lazy Ready (see _hold_lazy)
        self._sync_thread = SyncThread(f"node-{node_id}-sync")
        self._awaiting_sync = False  # the driver waits for a sync (its Ready's outputs are held)
        self._early_due = False  # a release of early outputs is scheduled (see wake)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stopping = False
        self.failed: BaseException | None = None  # the driver died: the node must exit
        self.stopped = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, listen: str) -> int:
        """Serve on `listen` (host:port, port 0 = any free port); returns the bound port."""
        server = grpc.aio.server(options=server_grpc_options(self.core.options),
                                 interceptors=tls.server_interceptors(self.tls_files))
        chain_pb2_grpc.add_ChainNodeServicer_to_server(_Servicer(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        port = tls.add_port(server, listen, self.tls_files)
        if port == 0:
            raise OSError(f"cannot listen on {listen}")
        await server.start()
        self._server = server
        self._driver = asyncio.create_task(self._drive(), name=f"node-{self.id}-driver")
        self._spawn(self._watch_health(), "health")
        self._spawn(self._tick(), "tick")
        self._sample_disk()
        self._spawn(self._watch_disk(), "disk")
        await self._update_health()
        self._wake.set()  # a restarted node may have work at once (a tail commits what it holds)
        log.info("node serving node=%s listen=%s port=%d", self.id, listen, port)
        return port

    async def stop(self, grace: float = 2.0) -> None:
        """Graceful stop: refuse new calls, let running ones finish, make everything durable, close."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        log.info("node stopping node=%s", self.id)
        await self.health.enter_graceful_shutdown()
        self.watches.close()
        for up in self._uplinks.values():  # end our predecessor's stream so the server can stop
            up.queue.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace)
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._driver
        if self._syncing is not None:  # the store must not close under an fsync still running
            await asyncio.wait([self._syncing])
        if self._compaction is not None:  # nor under a compaction
            await asyncio.wait([self._compaction])
        self._sync_thread.close()
        self._flush_lazy()  # a Ready held back (_hold_lazy): its commit point
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
        self.metrics.close()
        try:
            self.store.sync()
        except Exception as e:  # a store wedged by a full disk: what was written is in its log already
            log.warning("final sync failed node=%s error=%r", self.id, str(e))
        self.store.close()
        self.stopped.set()
        log.info("node stopped node=%s", self.id)

    def wake(self) -> None:
        self._wake.set()
        if self._awaiting_sync and not self._early_due:
            # The driver waits for a sync: acks and write replies need not (NodeDriver.release_early).
            # Once per loop iteration, however many inputs arrive in it.
            self._early_due = True
            asyncio.get_running_loop().call_soon(self._release_early)

    def _release_early(self) -> None:
        self._early_due = False
        if self.failed is None and not self._stopping and self.driver.release_early():
            self.watches.notify()

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"node-{self.id}-{name}")  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ the driver

    async def _drive(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.driver.has_ready():
                    if self._hold_lazy():
                        break  # the next input, or the hold's timer, wakes the driver again
                    try:
                        for rd in self.driver.step():  # yields once when the Ready's records must be synced
                            await self._sync(rd)
                    except StorageFull as e:
                        await self._persist_refused(e)
                        continue
                    if self._persist_held:
                        self._persist_held = False
                        log.warning("disk has room again: persisting resumed node=%s", self.id)
                    self._prune_downlinks()
                    self.watches.notify()
        except asyncio.CancelledError:
            raise  # stopping: stop() syncs what was applied
        except BaseException as e:  # a broken invariant or a failing disk: stop serving at once
            self._driver_failed(e)
            raise

    def _driver_failed(self, e: BaseException) -> None:
        log.critical("node driver failed node=%s error=%r", self.id, e)
        self.failed = e
        self._fail_waiting("node failed")
        if not self._stopping:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.stop(grace=0)))

    def _hold_lazy(self) -> bool:
        """Whether to hold back the core's next Ready for now: one that carries only lazy records
        (`ChainCore.lazy_only`: a commit point moved by an ack, the trims it allows) waits up to
        LAZY_READY_HOLD for an input that makes the next Ready anyway, and its records go with that one's:
        under load, one store write and one Ready cycle less per batch on every node. A held Ready the
        storage refused is never held back again. The acks and write replies the core lets out early
        leave first (they would otherwise make that Ready)."""
        if self.driver.held is None and self.driver.release_early():
            self.watches.notify()
        if self.driver.held is None and self.core.lazy_only():
            if self._lazy_timer is None:
                self._lazy_timer = asyncio.get_running_loop().call_later(LAZY_READY_HOLD, self._lazy_hold_over)
                return True
            if not self._lazy_timer.cancelled():
                return True
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        return False

    def _flush_lazy(self) -> None:
        """Write the lazy Ready `_hold_lazy` holds back, now (the driver is then between Readys: the
        core has none in flight). A disk with no room for it leaves it held by the driver, as any."""
        if self.failed is not None or self.driver.held is not None or not self.core.lazy_only():
            return
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        try:
            self.driver.step_now()
        except StorageFull:
            pass  # held: the driver tries it again on its next step
        except Exception as e:  # as in the driver itself
            self._driver_failed(e)
            return
        if not self._stopping:
            self.wake()

    def _lazy_hold_over(self) -> None:
        assert self._lazy_timer is not None
        self._lazy_timer.cancel()  # marks the hold over: _hold_lazy lets the Ready through
        self._wake.set()

    async def _persist_refused(self, e: StorageFull) -> None:
        """The disk had no room for the Ready: the driver holds it and the next step tries it again.
        The alarm is raised meanwhile (the head refuses new writes), reads keep being served."""
        if not self._persist_held:
            self._persist_held = True
            self.metrics.persist_held.inc()
            log.error("disk full: holding writes until space is back node=%s reason=%s", self.id, e)
        if not self.disk_alarm.raised:
            self.disk_alarm.raised = True
        self._refresh_alarms()
        await asyncio.sleep(DISK_SAMPLE_INTERVAL)

    # ------------------------------------------------------------------ the storage alarm

    def _sample_disk(self) -> None:
        was = self.disk_alarm.raised
        try:
            sample = self.disk_sample()
        except OSError as e:
            log.warning("cannot sample the data volume node=%s error=%r", self.id, str(e))
            return
        raised = self.disk_alarm.observe(sample)
        self._roomy.observed(sample)
        if raised != was:
            if raised:
                log.error("storage alarm raised: disk over its high-water mark node=%s free=%d total=%d",
                          self.id, sample.free, sample.total)
            else:
                log.warning("storage alarm cleared node=%s free=%d total=%d", self.id, sample.free, sample.total)
        if raised != (self.id in self.core.storage_alarms):
            self._refresh_alarms()

    async def _watch_disk(self) -> None:
        while True:
            await asyncio.sleep(DISK_SAMPLE_INTERVAL)
            self._sample_disk()
            last = self.disk_alarm.last
            # Compaction writes new files before it deletes old ones: not without some room. If it fails
            # for want of space anyway, the store's next write fails too, and it is reopened (see apply).
            room = last is not None and self.disk_alarm.may_persist(self.disk_alarm.reserve(last.total))
            if self.disk_alarm.raised and room and not self.store.wedged and not self._roomy.compacting:
                now = self.clock()
                if now - self._compacted_at >= COMPACT_INTERVAL:
                    self._compacted_at = now
                    self._spawn(self._compact(), "compact")

    async def _compact(self) -> None:
        """Compact the store in a thread while the disk is full: deletes and collected garbage free space."""
        self._roomy.compacting = True
        try:
            self._compaction = asyncio.ensure_future(asyncio.to_thread(self.store.compact))
            await asyncio.shield(self._compaction)
        except Exception as e:  # no room even for that: the next round tries again
            log.warning("compaction failed node=%s error=%r", self.id, str(e))
        finally:
            self._roomy.compacting = False
        self._sample_disk()
        self.wake()

    def set_chain_alarms(self, nodes: frozenset[str]) -> None:
        """The chain's members whose storage alarm is raised, as the coordinator relays them."""
        if nodes != self._chain_alarms:
            self._chain_alarms = nodes
            self._refresh_alarms()

    def set_chain_clean_point(self, seq: int) -> None:
        """The lowest commit point of the chain's members, as the coordinator relays it (garbage collection)."""
        if seq > self.core.chain_clean_point:
            self.core.set_chain_clean_point(seq)
            self.wake()

    def _refresh_alarms(self) -> None:
        # Our own alarm is known here first-hand; the coordinator's copy of it may be a heartbeat old.
        nodes = set(self._chain_alarms - {self.id})
        if self.disk_alarm.raised:
            nodes.add(self.id)
        self.core.set_storage_alarms(frozenset(nodes))
        if self.core.has_ready():  # our own alarm compacts the history at once (ChainCore._collect)
            self.wake()

    async def _sync(self, rd: Ready) -> None:
        """Make everything applied durable: one fsync in a thread, while the loop keeps stepping the core."""
        started = time.perf_counter()
        self._syncing = self._sync_thread.run(self.store.sync)
        self._awaiting_sync = True
        try:
            await asyncio.shield(self._syncing)
        finally:
            self._awaiting_sync = False
        entries = sum(len(r.entries) for r in rd.persist if isinstance(r, AppendEntries))
        self.metrics.observe_sync(time.perf_counter() - started, entries)

    # The driver's Transport: a Ready's outputs onto gRPC streams and calls.

    def send_link(self, message: Outbound) -> None:
        self._send(message.to, message.body)

    def send_version_query(self, query: VersionQuery) -> None:
        self._spawn(self._query_version(query), f"query-{query.query_id}")

    def release_reply(self, ticket: int, reply: WriteReply | ReadReply | RangeReply) -> None:
        fut = self._waiting.pop(ticket, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def report_caught_up(self, through: int, epoch: int) -> None:
        log.info("caught up node=%s epoch=%d through=%d", self.id, epoch, through)

    def _fail_waiting(self, why: str) -> None:
        """The driver failed. A waiting write may already be sequenced, persisted and forwarded, and
        commit without us: each op not yet decided gets OUTCOME_UNKNOWN, never a plain failure (which
        would say nothing was applied). Waiting reads changed nothing: they get UNAVAILABLE."""
        try:
            decided = dict(self.core.abandon_writes(why))
        except Exception as e:  # the core's own state may be what broke: every op is then unknown
            log.error("cannot collect waiting writes node=%s error=%r", self.id, e)
            decided = {}
        unknown = WriteResult(Error(Code.OUTCOME_UNKNOWN, f"{why}; retry with the same request id", self.core.epoch))
        for ticket, fut in self._waiting.items():
            if fut.done():
                continue
            if ticket in self._write_ops:
                fut.set_result(decided.get(ticket) or WriteReply(results=(unknown,) * self._write_ops[ticket]))
            else:
                fut.set_exception(_Unavailable(why))
        self._waiting.clear()

    # ------------------------------------------------------------------ client requests

    async def write(self, epoch: int, ops: list[WriteOp]) -> WriteReply:
        ticket = next(self._tickets)
        reply = self.driver.write(ticket, epoch, ops)
        self.wake()
        if reply is not None:
            return reply
        self._write_ops[ticket] = len(ops)
        try:
            return await self._await_reply(ticket)  # type: ignore[return-value]
        finally:
            del self._write_ops[ticket]

    async def read(self, epoch: int, key: bytes, consistency: Consistency) -> ReadReply:
        ticket = next(self._tickets)
        reply = self.driver.read(ticket, epoch, key, consistency)
        if reply is not None:
            return reply
        self.wake()
        return await self._await_reply(ticket)  # type: ignore[return-value]

    async def read_batch(self, epoch: int, reads: list[tuple[bytes, Consistency]]) -> tuple[Error, list[ReadReply]]:
        """Many reads, each exactly a `read` of its key, refused as a whole when the node does not serve
        reads in `epoch` now. The dirty keys among them wait for one version query to the tail (the core
        asks once per Ready for every read in its backlog). Results stop short of the message size limit
        (see `_within_reply_limit`); the reads left out were counted as served but are asked again."""
        now = self.clock()
        err = self.core.check_read(epoch, now)
        if err is not None:
            return err, []
        replies: list[ReadReply | None] = []
        waiting: list[tuple[int, int]] = []  # (index in the batch, ticket) of reads the core holds
        loop = asyncio.get_running_loop()
        for key, consistency in reads:
            ticket = next(self._tickets)
            reply = self.core.client_read(ticket, epoch, key, consistency, now)
            if reply is None:
                self._waiting[ticket] = loop.create_future()
                waiting.append((len(replies), ticket))
            replies.append(reply)
        if waiting:
            self.wake()
            try:
                # gather retrieves every future's outcome, so a node failure mid-batch leaves no
                # unobserved exception behind.
                answers = await asyncio.gather(*(self._waiting[t] for _, t in waiting))
                for (i, _), answer in zip(waiting, answers, strict=True):
                    replies[i] = answer  # type: ignore[assignment]
            finally:
                for _, ticket in waiting:
                    self._waiting.pop(ticket, None)
        return OK, _within_reply_limit(replies, self._reply_limit)  # type: ignore[arg-type]

    async def range(self, epoch: int, r: RangeRead) -> RangeReply:
        """A range at a snapshot (see keychain.node.snapshot_range): a strong one with no snapshot, or
        with one this node has not committed yet, waits for the tail's commit point."""
        ticket = next(self._tickets)
        reply = self.driver.range(ticket, epoch, r)
        if reply is not None:
            return reply
        self.wake()
        return await self._await_reply(ticket)  # type: ignore[return-value]

    async def _await_reply(self, ticket: int) -> WriteReply | ReadReply | RangeReply:
        fut: asyncio.Future[WriteReply | ReadReply | RangeReply] = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = fut
        try:
            return await fut
        finally:
            self._waiting.pop(ticket, None)

    # ------------------------------------------------------------------ configuration

    def configure(self, config: ChainConfig, lease_until: float | None) -> Error:
        if config.chain != self.store.chain:
            return Error(Code.INVALID_ARGUMENT, f"this node serves chain {self.store.chain!r}, not {config.chain!r}",
                         self.core.epoch)
        try:
            err = self.core.configure(config, lease_until)
        except ValueError as e:
            return Error(Code.INVALID_ARGUMENT, str(e), self.core.epoch)
        self.wake()
        return err

    def renew_lease(self, lease_until: float) -> None:
        self.core.renew_lease(lease_until)

    def status(self) -> NodeStatus:
        self._flush_lazy()  # the store's counts (keys) are reported as of every commit point known
        s = self.core.status(self.clock())
        free = self.disk_alarm.last.free if self.disk_alarm.last else 0
        return dataclasses.replace(s, storage_alarm=self.disk_alarm.raised, disk_free_bytes=free)

    # ------------------------------------------------------------------ links

    def _address(self, node_id: str) -> str | None:
        cfg = self.core.config
        member = cfg.member(node_id) if cfg else None
        return member.address if member and member.address else None

    def _channel(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = tls.channel(address, self.tls_files, grpc_options(self.core.options))
            self._channels[address] = ch
        return ch

    def _stub(self, node_id: str) -> chain_pb2_grpc.ChainNodeStub | None:
        address = self._address(node_id)
        return None if address is None else chain_pb2_grpc.ChainNodeStub(self._channel(address))

    def _send(self, to: str, body: Hello | Welcome | Batch | Ack) -> None:
        if isinstance(body, Hello):
            self._open_downlink(to, body)
        elif isinstance(body, Batch):
            link = self._downlinks.get(to)
            if link is None:
                log.debug("batch without a link node=%s to=%s", self.id, to)
                return
            link.queue.put_nowait(wire.link_down_to_pb(body))
        else:
            up = self._uplinks.get(to)
            if up is None:
                log.debug("no link from predecessor node=%s to=%s", self.id, to)
                return
            up.queue.put_nowait(wire.link_up_to_pb(body))

    def _open_downlink(self, peer: str, hello: Hello) -> None:
        old = self._downlinks.pop(peer, None)
        if old is not None and old.task is not None:
            old.task.cancel()
        link = _DownLink(peer)
        link.queue.put_nowait(wire.link_down_to_pb(hello))
        self._downlinks[peer] = link
        link.task = self._spawn(self._run_downlink(link), f"link-{peer}")

    def _prune_downlinks(self) -> None:
        for peer in [p for p in self._downlinks if p != self.core.succ]:
            link = self._downlinks.pop(peer)
            if link.task is not None:
                link.task.cancel()

    async def _run_downlink(self, link: _DownLink) -> None:
        peer = link.peer
        backoff = self._link_backoff.setdefault(peer, FailureStreak(RECONNECT_BACKOFF, self.rng))
        stub = self._stub(peer)
        reason = "no address"
        if stub is not None:
            call = stub.Link(_drain(link.queue))
            try:
                async for up in call:
                    if self._downlinks.get(peer) is not link:
                        return
                    body = wire.link_up_from_pb(up)
                    if isinstance(body, Welcome):
                        self.core.on_welcome(peer, body)
                        if body.error.ok:
                            backoff.reset()
                    else:
                        self.core.on_ack(peer, body)
                    self.wake()
                    if self.core.link == LinkState.IDLE:
                        reason = "refused"  # the core dropped the link (refused, or its history is off)
                        break
                else:
                    reason = "closed by the successor"
            except grpc.aio.AioRpcError as e:
                reason = f"{e.code().name}: {e.details()}"
            except wire.WireError as e:
                reason = f"malformed message: {e}"
            finally:
                call.cancel()
        if self._downlinks.get(peer) is not link or self._stopping:
            return
        self.metrics.link_failures.inc()
        self.core.downlink_lost(peer)
        self.wake()
        delay = backoff.delay()
        log.info("link down node=%s succ=%s reason=%r retry_in=%.3f", self.id, peer, reason, delay)
        await asyncio.sleep(delay)
        if self._downlinks.get(peer) is link:
            del self._downlinks[peer]
            self.core.retry_link()
            self.wake()

    async def serve_uplink(
        self, requests: AsyncIterator[chain_pb2.LinkDown], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chain_pb2.LinkUp]:
        """The Link RPC: our predecessor's stream."""
        first = await anext(requests, None)
        if first is None:
            return
        try:
            hello = wire.link_down_from_pb(first)
        except wire.WireError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if not isinstance(hello, Hello):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a link must open with a hello")
        peer = hello.from_id
        up = _UpLink(peer)
        old = self._uplinks.get(peer)
        if old is not None:
            old.queue.put_nowait(None)
        self._uplinks[peer] = up
        self.core.on_hello(peer, hello)
        self.wake()

        async def read() -> None:
            try:
                async for msg in requests:
                    if self._uplinks.get(peer) is not up:
                        break
                    body = wire.link_down_from_pb(msg)
                    if isinstance(body, Batch):
                        self.core.on_batch(peer, body)
                    else:
                        self.core.on_hello(peer, body)
                    self.wake()
            except wire.WireError as e:  # a peer we cannot understand: drop its stream, it reconnects
                log.warning("malformed link message node=%s from=%s error=%r", self.id, peer, str(e))
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass
            finally:
                up.queue.put_nowait(None)

        reader = self._spawn(read(), f"uplink-{peer}")
        try:
            while (msg := await up.queue.get()) is not None:
                yield msg
        finally:
            reader.cancel()
            if self._uplinks.get(peer) is up:
                del self._uplinks[peer]
                self.core.uplink_lost(peer)
                self.wake()

    # ------------------------------------------------------------------ version queries

    async def _query_version(self, q: VersionQuery) -> None:
        """Ask the tail. The core gets exactly one answer per query: the tail's, or an error reply
        whatever went wrong (the reads waiting on it would otherwise hang until their deadline)."""
        try:
            reply = await self._ask_tail(q)
        except asyncio.CancelledError:
            raise  # the node is stopping; its readers are failed by the server's shutdown
        except Exception as e:
            log.warning("version query failed node=%s tail=%s error=%r", self.id, q.to, str(e))
            reply = VersionQueryReply(Error(Code.UNAVAILABLE, f"version query to {q.to} failed: {e}"))
        self.core.on_version_reply(q.query_id, reply)
        self.wake()

    async def _ask_tail(self, q: VersionQuery) -> VersionQueryReply:
        stub = self._stub(q.to)
        if stub is None:
            return VersionQueryReply(Error(Code.UNAVAILABLE, f"no address for the tail {q.to}"))
        try:
            pb = await stub.QueryVersion(wire.version_query_to_pb(q.epoch, q.keys), timeout=timing.RPC_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            return VersionQueryReply(Error(Code.UNAVAILABLE, f"{e.code().name}: {e.details()}"))
        return wire.version_reply_from_pb(pb)

    # ------------------------------------------------------------------ state transfer

    def start_transfer(self, start: TransferStart) -> None:
        old = self._transfers_in.pop(start.from_id, None)
        if old is not None:
            old.cancel()
        self._transfers_in[start.from_id] = self._spawn(self._receive_transfer(start), f"transfer-{start.from_id}")

    async def _receive_transfer(self, t: TransferStart) -> None:
        """Feed one Transfer stream to the core. A stream that breaks before its last chunk is
        reported with `transfer_failed` after a backoff that grows over consecutive failures."""
        backoff = self._transfer_backoff.setdefault(t.from_id, FailureStreak(RECONNECT_BACKOFF, self.rng))
        stub = self._stub(t.from_id)
        call = None
        try:
            if stub is None:
                raise ConnectionError(f"no address for {t.from_id}")
            call = stub.Transfer(chain_pb2.TransferRequest(epoch=t.epoch, from_id=self.id))
            chunks = 0
            async for pb in call:
                self.core.on_transfer_chunk(t.from_id, wire.transfer_chunk_from_pb(pb))
                self.wake()
                chunks += 1
                if pb.last:
                    log.info("transfer received node=%s from=%s chunks=%d", self.id, t.from_id, chunks)
                    backoff.reset()
                    if self._transfers_in.get(t.from_id) is asyncio.current_task():
                        del self._transfers_in[t.from_id]
                    return
            raise ConnectionError("the transfer stream ended before its last chunk")
        except (grpc.aio.AioRpcError, ConnectionError, wire.WireError) as e:
            self.metrics.transfer_failures.inc()
            delay = backoff.delay()
            log.info("transfer failed node=%s from=%s error=%r retry_in=%.3f", self.id, t.from_id, str(e), delay)
        finally:
            if call is not None:
                call.cancel()
        await asyncio.sleep(delay)
        if self._transfers_in.get(t.from_id) is asyncio.current_task():
            del self._transfers_in[t.from_id]
            self.core.transfer_failed(t.from_id)
            self.wake()

    async def serve_transfer(
        self, request: chain_pb2.TransferRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chain_pb2.TransferChunk]:
        err = self.core.begin_transfer(request.from_id, request.epoch)
        if not err.ok:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{err.code.name}: {err.message}")
        while True:
            try:
                chunk = self.core.transfer_chunk(request.from_id)
            except ValueError as e:  # a reconfiguration ended the session
                await context.abort(grpc.StatusCode.ABORTED, str(e))
            pb = wire.transfer_chunk_to_pb(chunk)
            size = pb.ByteSize()
            wait = self.transfer_bucket.take(size, self.clock())
            if wait > 0:  # paced, so the foreground traffic we serve meanwhile keeps its share
                self.metrics.transfer_paced_seconds.inc(wait)
                await self._sleep(wait)
            yield pb
            self.metrics.transfer_sent_bytes.inc(size)
            if chunk.last:
                return

    # ------------------------------------------------------------------ health

    async def _update_health(self) -> None:
        serving = self.core.serving(self.clock())
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(SERVICE_NAME, status)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def _tick(self) -> None:
        """Link health: sample the links, and keep an idle downlink alive (keychain.node.link_health)."""
        while True:
            await asyncio.sleep(timing.KEEPALIVE_INTERVAL)
            self.driver.tick()
            self.wake()

    async def _watch_health(self) -> None:
        while True:
            await self._update_health()
            await asyncio.sleep(timing.HEARTBEAT_INTERVAL)


class _Unavailable(Exception):
    pass


# Protobuf framing of one ReadReply inside a ReadBatchReply (tags, lengths, the version varint, an
# error's code and epoch): a generous upper bound, like the links' ENTRY_FRAMING_BYTES.
READ_REPLY_FRAMING_BYTES = 64


def _within_reply_limit(replies: list[ReadReply], limit: int) -> list[ReadReply]:
    """The longest prefix of `replies` whose encoding fits in `limit` bytes, but at least one: a
    batch of large values must not exceed the gRPC message limit (a single value always fits)."""
    total = 0
    for i, r in enumerate(replies):
        total += len(r.value) + len(r.error.message) + READ_REPLY_FRAMING_BYTES
        if total > limit and i > 0:
            return replies[:i]
    return replies


async def _drain(queue: asyncio.Queue[chain_pb2.LinkDown | None]) -> AsyncIterator[chain_pb2.LinkDown]:
    while (msg := await queue.get()) is not None:
        yield msg


class _Servicer(chain_pb2_grpc.ChainNodeServicer):
    """Translates RPCs to calls on the node; no protocol logic lives here."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node

    async def Write(self, request: chain_pb2.WriteRequest, context: grpc.aio.ServicerContext) -> chain_pb2.WriteReply:
        try:
            epoch, ops = wire.write_request_from_pb(request)
        except wire.WireError as e:
            return wire.write_reply_to_pb(WriteReply(Error(Code.INVALID_ARGUMENT, f"bad write op: {e}")))
        try:
            reply = await self.node.write(epoch, ops)
        except _Unavailable as e:
            reply = WriteReply(Error(Code.UNAVAILABLE, str(e)))
        return wire.write_reply_to_pb(reply)

    async def Read(self, request: chain_pb2.ReadRequest, context: grpc.aio.ServicerContext) -> chain_pb2.ReadReply:
        try:
            epoch, key, consistency = wire.read_request_from_pb(request)
        except wire.WireError:
            return wire.read_reply_to_pb(ReadReply(Error(Code.INVALID_ARGUMENT, "unknown consistency")))
        try:
            reply = await self.node.read(epoch, key, consistency)
        except _Unavailable as e:
            reply = ReadReply(Error(Code.UNAVAILABLE, str(e)))
        return wire.read_reply_to_pb(reply)

    async def ReadBatch(self, request: chain_pb2.ReadBatchRequest,
                        context: grpc.aio.ServicerContext) -> chain_pb2.ReadBatchReply:
        try:
            epoch, reads = wire.read_batch_request_from_pb(request)
        except wire.WireError as e:
            return wire.read_batch_reply_to_pb(Error(Code.INVALID_ARGUMENT, f"bad read op: {e}"), [])
        try:
            error, replies = await self.node.read_batch(epoch, reads)
        except _Unavailable as e:
            error, replies = Error(Code.UNAVAILABLE, str(e)), []
        return wire.read_batch_reply_to_pb(error, replies)

    async def ReadStream(self, request_iterator: AsyncIterator[chain_pb2.ReadBatchRequest],  # type: ignore[override]
                         context: grpc.aio.ServicerContext) -> AsyncIterator[chain_pb2.ReadBatchReply]:
        """ReadBatch over one stream: each request is served as it arrives, concurrently (a batch
        waiting on the tail for a dirty key's version holds up no other), and answered as soon as it
        is served, with its `call` number."""
        replies: asyncio.Queue[chain_pb2.ReadBatchReply | None] = asyncio.Queue()
        serving: set[asyncio.Task[None]] = set()

        async def serve(request: chain_pb2.ReadBatchRequest) -> None:
            try:
                reply = await self.ReadBatch(request, context)
            except Exception as e:  # the node failed under it: the caller retries elsewhere
                reply = wire.read_batch_reply_to_pb(Error(Code.UNAVAILABLE, f"read failed: {e!r}"), [])
            reply.call = request.call
            replies.put_nowait(reply)

        async def take() -> None:
            try:
                async for request in request_iterator:
                    task = asyncio.create_task(serve(request))
                    serving.add(task)
                    task.add_done_callback(serving.discard)
                if serving:
                    await asyncio.gather(*serving)
            finally:
                replies.put_nowait(None)

        taker = asyncio.create_task(take())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            taker.cancel()
            for task in list(serving):
                task.cancel()

    async def Watch(self, request: chain_pb2.WatchRequest,  # type: ignore[override]
                    context: grpc.aio.ServicerContext) -> AsyncIterator[chain_pb2.WatchBatch]:
        async for batch in self.node.watches.serve(request.epoch, request.start, request.end,
                                                   request.after_version):
            yield batch_to_pb(batch)

    async def Range(self, request: chain_pb2.RangeRequest, context: grpc.aio.ServicerContext) -> chain_pb2.RangeReply:
        try:
            epoch, r = wire.range_request_from_pb(request)
        except wire.WireError as e:
            return wire.range_reply_to_pb(RangeReply(Error(Code.INVALID_ARGUMENT, f"bad range: {e}")))
        try:
            reply = await self.node.range(epoch, r)
        except _Unavailable as e:
            reply = RangeReply(Error(Code.UNAVAILABLE, str(e)))
        return wire.range_reply_to_pb(reply)

    async def Link(self, request_iterator: AsyncIterator[chain_pb2.LinkDown],  # type: ignore[override]
                   context: grpc.aio.ServicerContext) -> AsyncIterator[chain_pb2.LinkUp]:
        async for msg in self.node.serve_uplink(request_iterator, context):
            yield msg

    async def QueryVersion(self, request: chain_pb2.VersionQueryRequest,
                           context: grpc.aio.ServicerContext) -> chain_pb2.VersionQueryReply:
        reply = self.node.driver.version_query(request.epoch, list(request.keys))
        return wire.version_reply_to_pb(reply)

    async def Transfer(self, request: chain_pb2.TransferRequest,  # type: ignore[override]
                       context: grpc.aio.ServicerContext) -> AsyncIterator[chain_pb2.TransferChunk]:
        async for chunk in self.node.serve_transfer(request, context):
            yield chunk

    async def Configure(self, request: chain_pb2.ConfigureRequest,
                        context: grpc.aio.ServicerContext) -> chain_pb2.ConfigureReply:
        if not self.node.static:
            return chain_pb2.ConfigureReply(error=wire.error_to_pb(Error(
                Code.PRECONDITION_FAILED, "this node follows its coordinator; Configure is served only with --static",
                self.node.core.epoch)))
        try:
            config = wire.config_from_pb(request.config)
        except ValueError as e:  # WireError or an invalid order of members
            return chain_pb2.ConfigureReply(error=wire.error_to_pb(Error(Code.INVALID_ARGUMENT, str(e))))
        lease_until = None if request.lease_ms == 0 else self.node.clock() + request.lease_ms / 1000
        return chain_pb2.ConfigureReply(error=wire.error_to_pb(self.node.configure(config, lease_until)))

    async def GetStatus(self, request: chain_pb2.StatusRequest,
                        context: grpc.aio.ServicerContext) -> chain_pb2.NodeStatus:
        return wire.status_to_pb(self.node.status())
