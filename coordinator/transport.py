"""The Raft peer transport: batches of messages on one `Raft.StepStream` per peer (keychain/proto/raft.proto).

Sending: `send(message)` only queues (the member driver never waits on the network). One task per
peer drains its queue into a `MessageBatch` (every message waiting, up to `MAX_BATCH_BYTES`) and
writes it to the peer's stream; one write is in flight per peer and the stream keeps their order,
so the peer receives messages in the order the core produced them, and everything produced while a
write was in flight goes out together in the next batch. A batch is one message on a long-lived
stream, not a call of its own: an idle cluster's heartbeats cost a few times less CPU that way
(bench/idle_cpu.py). A stream is ended and a new one opened (after the old one was received whole,
so the order holds) when the channel follows rotated TLS files (they are used for new calls only),
and in any case every `STREAM_MAX_AGE`.

Failures: when a write fails or takes longer than `STEP_TIMEOUT` (peer down, restarting, stopped, or
its stream broken: a dead connection is noticed by the channel's keepalive), or the stream ends in
an error while idle, the stream is dropped with the batch and everything queued for that peer (Raft
retransmits what matters, and stale appends would only be refused), the core is told the peer is
unreachable so the leader stops pipelining to it, and a dropped SNAPSHOT is reported as failed (also
one for a peer whose address is unknown, never queued at all); a SNAPSHOT written is reported as
sent. The sender retries with a short backoff, so a restarted peer is reached again within
`RECONNECT_MAX`. The queue is bounded: a slow peer loses its oldest messages, never the sender's
memory.

Addresses: the transport starts from the member's command-line peers and is then told the address
book whenever it changes (`set_addresses`, fed by applied membership changes and snapshots). A
member that leaves the book keeps its sender until what is queued for it went out (the leader's
parting heartbeat to a removed member), then the sender stops; a member whose address changed is
reached at the new one from the next batch on.

Receiving: the `StepStream` handler (and `Step`, the same for one batch, which members before the
stream sent) converts each message (keychain.coordinator.raft_wire) and steps it into the member;
a malformed batch ends the stream with INVALID_ARGUMENT and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import grpc
from keychain.coordinator.messages import Message, MessageType
from keychain.coordinator.raft_wire import WireError, batch_from_proto, message_to_proto

from keychain import tls
from keychain.backoff import Backoff, FailureStreak
from keychain.proto import raft_pb2, raft_pb2_grpc
from keychain.tls import TlsFiles

log = logging.getLogger(__name__)

QUEUE_LIMIT = 4096  # messages waiting for one peer; beyond it the oldest are dropped
MAX_BATCH_BYTES = 4 << 20  # a batch is cut after this many bytes (gRPC's default limit is 4 MiB)
STEP_TIMEOUT = 0.3  # seconds: a peer slower than this counts as unreachable (election timeout is 0.3-0.6)
STREAM_MAX_AGE = 30.0  # seconds a stream is written to before the next batch opens a new one
RECONNECT_MIN = 0.02  # seconds before retrying an unreachable peer
RECONNECT_MAX = 0.2  # backoff ceiling
# No jitter (floor 1): one peer per stream, and a restarted peer must be found again quickly.
RECONNECT_BACKOFF = Backoff(base=RECONNECT_MIN, cap=RECONNECT_MAX, floor=1.0)
# gRPC's own reconnection backoff starts at 1 s and grows to minutes; a call made meanwhile fails
# at once. Keep it as short as ours, or a restarted peer stays "unreachable" long after it is up.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", int(RECONNECT_MIN * 1000)),
    ("grpc.min_reconnect_backoff_ms", int(RECONNECT_MIN * 1000)),
    ("grpc.max_reconnect_backoff_ms", int(RECONNECT_MAX * 1000)),
]


class Receiver(Protocol):
    def step(self, message: Message) -> None: ...
    def report_unreachable(self, peer: str) -> None: ...
    def report_snapshot(self, peer: str, ok: bool) -> None: ...


class _Peer:
    def __init__(self, peer: str, address: str) -> None:
        self.id = peer
        self.address = address
        self.queue: deque[Message] = deque()
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.channel: grpc.aio.Channel | None = None
        self.retired = False  # no longer in the address book: send what is queued, then stop
        self.stream: grpc.aio.StreamUnaryCall | None = None  # the open StepStream, if any
        self.stream_opened = 0.0  # loop time it was opened
        self.stream_on: object = None  # the channel it was opened on


class RaftTransport(raft_pb2_grpc.RaftServicer):
    def __init__(self, member_id: str, peers: dict[str, str], tls_files: TlsFiles | None = None) -> None:
        self.id = member_id
        self.tls_files = tls_files  # mutual TLS to the other members (None: plaintext)
        self._addresses = {p: a for p, a in peers.items() if p != member_id}
        self._peers: dict[str, _Peer] = {}
        self._retiring: set[_Peer] = set()  # retired senders still draining their queues
        self._receiver: Receiver | None = None
        self._closed = False
        self._watchers: set[asyncio.Task[None]] = set()  # one per open stream: notices it ending

    def attach(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def add_to_server(self, server: grpc.aio.Server) -> None:
        raft_pb2_grpc.add_RaftServicer_to_server(self, server)

    # ---- sending ----

    def send(self, message: Message) -> None:
        if self._closed:
            return
        peer = self._peer(message.to)
        if peer is None:
            log.debug("raft transport drop to=%s reason=unknown-peer", message.to)
            self._dropped(message.to, [message])
            return
        if len(peer.queue) >= QUEUE_LIMIT:
            self._dropped(peer.id, [peer.queue.popleft()])
        peer.queue.append(message)
        peer.ready.set()
        if peer.task is None or peer.task.done():
            peer.task = asyncio.get_running_loop().create_task(self._run_peer(peer), name=f"raft-send-{peer.id}")

    def _peer(self, peer_id: str) -> _Peer | None:
        peer = self._peers.get(peer_id)
        address = self._addresses.get(peer_id)
        if peer is not None and address is not None and peer.address != address:
            self._retire(peer)
            peer = None
        if peer is None:
            if address is None:
                return None
            peer = self._peers[peer_id] = _Peer(peer_id, address)
        return peer

    def set_addresses(self, addresses: dict[str, str]) -> None:
        """Replace the peers' addresses (the member's own entry is ignored)."""
        new = {p: a for p, a in addresses.items() if p != self.id and a}
        if new != self._addresses:
            log.info("raft transport peers id=%s peers=%s", self.id,
                     ",".join(f"{p}={a}" for p, a in sorted(new.items())) or "-")
        self._addresses = new
        for peer in list(self._peers.values()):
            if new.get(peer.id) != peer.address:
                self._retire(peer)

    @property
    def addresses(self) -> dict[str, str]:
        return dict(self._addresses)

    def _retire(self, peer: _Peer) -> None:
        """Stop using `peer` (gone from the book, or moved): its sender drains its queue, then ends."""
        if self._peers.get(peer.id) is peer:
            del self._peers[peer.id]
        peer.retired = True
        if peer.task is not None and not peer.task.done():
            self._retiring.add(peer)
        peer.ready.set()

    async def _run_peer(self, peer: _Peer) -> None:
        backoff = FailureStreak(RECONNECT_BACKOFF, random.Random())
        peer.channel = tls.channel(peer.address, self.tls_files, CHANNEL_OPTIONS)
        stub = raft_pb2_grpc.RaftStub(peer.channel)
        try:
            await self._send_loop(peer, stub, backoff)
        finally:
            if peer.retired:
                self._retiring.discard(peer)
                await peer.channel.close()

    async def _send_loop(self, peer: _Peer, stub: raft_pb2_grpc.RaftStub, backoff: FailureStreak) -> None:
        while not self._closed:
            if not peer.queue:
                if peer.retired:
                    await self._end_stream(peer)
                    return
                peer.ready.clear()
                await peer.ready.wait()
                continue
            batch = self._take_batch(peer)
            try:
                async with asyncio.timeout(STEP_TIMEOUT):
                    stream = await self._stream(peer, stub)
                    await stream.write(raft_pb2.MessageBatch(messages=[message_to_proto(m) for m in batch]))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError) as exc:
                why = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                log.debug("raft transport unreachable to=%s code=%s", peer.id, why)
                self._drop_stream(peer)
                self._dropped(peer.id, batch + list(peer.queue))
                peer.queue.clear()
                if peer.retired:
                    return
                if self._receiver is not None:
                    self._receiver.report_unreachable(peer.id)
                await asyncio.sleep(backoff.delay())
                continue
            backoff.reset()
            if self._receiver is not None:
                for m in batch:
                    if m.type is MessageType.SNAPSHOT:
                        self._receiver.report_snapshot(peer.id, True)

    async def _stream(self, peer: _Peer, stub: raft_pb2_grpc.RaftStub) -> grpc.aio.StreamUnaryCall:
        """The peer's open stream; a new one if there is none or it is `STREAM_MAX_AGE` old (the old
        one is ended and received whole first, so the peer steps every message in order)."""
        loop = asyncio.get_running_loop()
        # A channel following TLS files (tls.RotatingChannel) makes new calls on a new channel once
        # they changed: the stream moves there at its next batch.
        current = getattr(peer.channel, "current", None)
        on = current() if current is not None else peer.channel
        if peer.stream is not None and (loop.time() - peer.stream_opened >= STREAM_MAX_AGE or on is not peer.stream_on):
            await self._end_stream(peer)
        if peer.stream is None:
            call = stub.StepStream(wait_for_ready=False)
            peer.stream, peer.stream_opened, peer.stream_on = call, loop.time(), on
            watcher = loop.create_task(self._watch(peer, call), name=f"raft-stream-{peer.id}")
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        return peer.stream

    async def _end_stream(self, peer: _Peer) -> None:
        """Close the peer's stream after what was written to it (bounded by `STEP_TIMEOUT`)."""
        call, peer.stream = peer.stream, None
        if call is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError):
            async with asyncio.timeout(STEP_TIMEOUT):
                await call.done_writing()
                await call
        call.cancel()

    def _drop_stream(self, peer: _Peer) -> None:
        call, peer.stream = peer.stream, None
        if call is not None:
            call.cancel()

    async def _watch(self, peer: _Peer, call: grpc.aio.StreamUnaryCall) -> None:
        """A stream that ends in an error while nothing is being written: the peer is unreachable
        (a write would have said so, but an idle sender writes nothing)."""
        try:
            await call
        except asyncio.CancelledError:
            return
        except grpc.aio.AioRpcError as exc:
            if peer.stream is call:
                log.debug("raft transport stream ended to=%s code=%s", peer.id, exc.code().name)
                peer.stream = None
                if self._receiver is not None and not self._closed:
                    self._receiver.report_unreachable(peer.id)

    def _take_batch(self, peer: _Peer) -> list[Message]:
        batch = [peer.queue.popleft()]
        size = _size(batch[0])
        while peer.queue and size + _size(peer.queue[0]) <= MAX_BATCH_BYTES:
            m = peer.queue.popleft()
            size += _size(m)
            batch.append(m)
        return batch

    def _dropped(self, peer_id: str, messages: list[Message]) -> None:
        """Every message not sent goes through here: a SNAPSHOT among them is reported as failed, or
        the leader would wait for its outcome and never send that peer another."""
        if self._receiver is None:
            return
        for m in messages:
            if m.type is MessageType.SNAPSHOT:
                self._receiver.report_snapshot(peer_id, False)

    # ---- receiving ----

    async def StepStream(self, request_iterator: AsyncIterator[raft_pb2.MessageBatch],
                         context: grpc.aio.ServicerContext) -> raft_pb2.StepReply:
        async for request in request_iterator:
            await self._deliver(request, context)
        return raft_pb2.StepReply()

    async def Step(self, request: raft_pb2.MessageBatch, context: grpc.aio.ServicerContext) -> raft_pb2.StepReply:
        await self._deliver(request, context)
        return raft_pb2.StepReply()

    async def _deliver(self, request: raft_pb2.MessageBatch, context: grpc.aio.ServicerContext) -> None:
        try:
            messages = batch_from_proto(request)
        except WireError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed Raft message: {exc}")
        wrong = [m.to for m in messages if m.to != self.id]
        if wrong:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"messages for {sorted(set(wrong))} reached member {self.id!r}")
        if self._receiver is not None:
            for m in messages:
                self._receiver.step(m)

    async def close(self) -> None:
        self._closed = True
        tasks = [p.task for p in [*self._peers.values(), *self._retiring] if p.task is not None]
        tasks += list(self._watchers)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for p in self._peers.values():
            if p.channel is not None:
                await p.channel.close()


def _size(m: Message) -> int:
    """A cheap upper estimate of a message's encoded size."""
    size = 64 + len(m.context) + sum(len(e.data) + 24 for e in m.entries)
    if m.snapshot is not None:
        size += len(m.snapshot.data) + 32 * (len(m.snapshot.voters) + len(m.snapshot.learners))
    return size
