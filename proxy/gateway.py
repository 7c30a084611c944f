"""The proxy's path to the chain: batched writes to the head, spread and batched reads, retries.

This is the I/O shell around the pure pieces: `BatchQueue` decides what a WriteRequest (to the
head) or a ReadBatchRequest (to one member) carries, `ReadBalancer` picks a replica, `Retry`/
`classify` decide whether to try again. Both front ends (HTTP and gRPC) call `write` and `read`
and get either the chain's answer or an `OpError`. Writes and reads travel through one mechanism,
an `Outboxes` each (proxy/outbox.py); only their queue limits and batch senders differ.

Reads are grouped per member like writes per head: one ReadBatch in flight to a member, the
reads picked for it meanwhile leave together when it returns. A gRPC call costs the proxy (and
the node) about as much CPU as the read itself, so under load this divides that cost by the
batch size; an idle proxy still sends each read at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from prometheus_client import Counter

from keychain.proto import chain_pb2, chain_pb2_grpc

from .batching import BatchQueue
from .channels import ChannelPool
from .config import ProxyConfig
from .errors import FINAL_CHAIN_ERRORS, ErrorKind, OpError
from .metrics import ProxyMetrics
from .outbox import Outboxes
from .reachability import NodeReachability
from .read_streams import ReadStreams, StreamCallError
from .routing import (
    RETRY_BACKOFF,
    Disposition,
    ReadBalancer,
    Retry,
    classify,
    transport_failure_may_have_applied,
    write_may_have_applied,
)
from .topology import Topology
from .validation import check_consistency
from .watcher import CoordinatorWatcher

log = logging.getLogger("keychain.proxy.gateway")

Code = chain_pb2.Code
NodeStub = chain_pb2_grpc.ChainNodeStub


_EXPIRED = object()  # an attempt's outcome when the operation's deadline came first

# WriteRequests out to one head at a time. With one, a write arriving while a batch is out waits for
# that batch's whole chain round trip before its own starts: two halve that wait. The head's seq
# orders the writes of all batches out and request ids dedup a retry, so nothing else changes.
WRITE_BATCHES_IN_FLIGHT = 2
# Under load, up to this many more, each of at least EXTRA_WRITE_BATCH_MIN_OPS writes: with only two
# out, a 3-node chain has a node idle while the others work. Extra small batches would only split
# the same writes (a node spends about as much per batch as on 20 entries of one), so a light load
# never opens them. Measured with bench/write_profile.py: see bench/README.md.
EXTRA_WRITE_BATCHES = 2
EXTRA_WRITE_BATCH_MIN_OPS = 16


def compacted(compact_version: int, message: str) -> OpError:
    return OpError(ErrorKind.COMPACTED, message, compact_version=compact_version)


def refused_everywhere(refused: dict[str, int], topology: Topology) -> int | None:
    """When every active member answered COMPACTED (`refused`: member id -> its compact point),
    the oldest point any of them still serves; else None (another member may have it)."""
    if {m.id for m in topology.active} <= refused.keys():
        return min(refused.values())
    return None


def group_by_version(events: list[chain_pb2.WatchEvent], after: int) -> list[list[chain_pb2.WatchEvent]]:
    """A batch's events in groups of one version each, leaving out versions up to `after` (a
    member resent them): what a watcher gets is every version once, in order."""
    groups: list[list[chain_pb2.WatchEvent]] = []
    for event in events:
        if event.version <= after:
            continue
        if groups and groups[-1][0].version == event.version:
            groups[-1].append(event)
        elif not groups or event.version > groups[-1][0].version:
            groups.append([event])
    return groups


def _expire(done: asyncio.Future[object]) -> None:
    if not done.done():
        done.set_result(_EXPIRED)


@dataclass(slots=True)
class _Attempt:
    """One write waiting in (or sent with) a batch; the batch sender fills in the outcome."""

    op: chain_pb2.WriteOp
    done: asyncio.Future[object]  # resolved when the outcome fields are final (or on expiry)
    sent: bool = False
    result: chain_pb2.WriteResult | None = None  # the chain's per-op answer
    refusal: chain_pb2.Error | None = None  # the whole request was refused (epoch, head, lease)
    lost: bool = False  # no usable answer came back (no connection, a gRPC failure, a malformed reply)
    maybe_applied: bool = False  # ...and the head may have applied the write all the same
    abandoned: bool = False  # settled without an answer: the node it waits on is no longer the head


@dataclass(slots=True)
class _ReadAttempt:
    """One read waiting in (or sent with) a member's batch; the batch sender fills in the outcome."""

    op: chain_pb2.ReadOp
    done: asyncio.Future[object]  # resolved when the outcome fields are final (or on expiry)
    reply: chain_pb2.ReadReply | None = None  # the member's answer for this key
    failure: str | None = None  # why the member gave no answer: a retry reason
    resend: bool = False  # the member's reply was full before this read's turn: ask again


class ChainGateway:
    def __init__(
        self,
        config: ProxyConfig,
        watcher: CoordinatorWatcher,
        metrics: ProxyMetrics,
        *,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.watcher = watcher
        self.metrics = metrics
        self.rng = rng
        self.balancer = ReadBalancer()
        self._member_reads: dict[str, Counter] = {}  # member id -> its counter: labels() per read costs a lookup
        self.channels = ChannelPool(config.tls_files)
        # Which nodes leave this proxy's requests unanswered (reported by the server's UnreachableReporter).
        self.reachability = NodeReachability()
        self._writes: Outboxes[_Attempt] = Outboxes(self._write_queue, self._send_batch, self._prune_if_gone)
        self._reads: Outboxes[_ReadAttempt] = Outboxes(self._read_queue, self._send_read_batch, self._prune_if_gone)
        self._read_streams = ReadStreams(self._node)  # read batches travel on one stream per member
        # Idempotency keys this proxy makes: unique across proxies and restarts by the random prefix.
        self._id_prefix = f"p-{secrets.token_hex(8)}-"
        self._id_counter = itertools.count(1)

    # ---- shared helpers ----

    def new_idempotency_key(self) -> str:
        """The idempotency key of a write that came without one (named if its outcome is unknown)."""
        return f"{self._id_prefix}{next(self._id_counter)}"

    @property
    def topology(self) -> Topology | None:
        return self.watcher.topology

    def _unavailable(self, message: str) -> OpError:
        return OpError(ErrorKind.UNAVAILABLE, message, retry_after=self.config.retry_after_seconds)

    def _node(self, address: str) -> chain_pb2_grpc.ChainNodeStub:
        return self.channels.stub(address, NodeStub)

    async def probe(self, address: str, timeout: float) -> None:
        """Ask `address` for its status, which any live node answers at once; raises
        grpc.aio.AioRpcError when no answer comes within `timeout` (see proxy/reachability.py)."""
        await self._node(address).GetStatus(chain_pb2.StatusRequest(), timeout=timeout)

    async def _pause(self, delay: float) -> None:
        """Between attempts: ask for a fresh topology and wait for it, at most `delay` seconds."""
        self.watcher.request_refresh()
        await self.watcher.wait_changed(delay)

    @property
    def outbox_addresses(self) -> set[str]:
        """Addresses this proxy keeps a write or read outbox for (members, or ones still draining)."""
        return self._writes.addresses | self._reads.addresses

    def _member_addresses(self) -> set[str] | None:
        topology = self.topology
        return None if topology is None else {m.address for m in topology.members()}

    async def on_topology(self, topology: Topology) -> None:
        self._abandon_writes_to_former_heads(topology)
        self._abandon_reads_to_former_members(topology)
        keep = {m.address for m in topology.members()}
        self._writes.prune(keep)
        self._reads.prune(keep)
        await self.channels.retain(keep | self.outbox_addresses)

    async def _prune_if_gone(self, address: str) -> None:
        """After a batch to `address` returns: an outbox for an address that left the chain goes once
        drained. A topology change only prunes idle outboxes; one busy at that moment is pruned here.
        """
        members = self._member_addresses()
        if members is None or address in members:
            return
        if self._writes.prune(members) | self._reads.prune(members):
            await self.channels.retain(members | self.outbox_addresses)

    # ---- writes ----

    async def write(self, op: chain_pb2.WriteOp, idempotency_key: str) -> chain_pb2.WriteResult:
        """Apply one write through the head; returns the chain's OK result or raises OpError.

        `idempotency_key` is what the client can send again to learn the outcome (named in an
        outcome-unknown error); `op.request_id` is the chain's id derived from it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        retry = Retry(deadline, RETRY_BACKOFF, self.rng)
        while True:
            topology = self.topology
            if topology is None:
                raise self._unavailable("the proxy has not learned the chain's topology yet")
            head = topology.head
            if head is None:
                reason, maybe = "no active member", False
            else:
                attempt = self._submit(head.address, op)
                # A timer, not wait_for(shield(...)): no extra task per write on the hot path.
                timer = loop.call_at(deadline, _expire, attempt.done)
                await attempt.done
                timer.cancel()
                if attempt.done.result() is _EXPIRED:
                    # Still queued: the batch sender skips it. Sent: it may yet be applied.
                    if attempt.sent or retry.maybe_applied:
                        raise self._outcome_unknown(idempotency_key, "no answer from the head before the deadline")
                    raise self._unavailable("the head did not take the write before the deadline")
                reason, maybe = self._judge(attempt)
                if reason is None:
                    assert attempt.result is not None
                    return self._final(attempt.result)
            self.metrics.retries.labels("write", reason).inc()
            delay = retry.failed(loop.time(), reason, maybe_applied=maybe)
            if delay is None:
                if retry.outcome_unknown:
                    raise self._outcome_unknown(idempotency_key, f"last attempt: {reason}")
                raise self._unavailable(f"the chain is not accepting writes ({reason})")
            await self._pause(delay)

    def _judge(self, attempt: _Attempt) -> tuple[str | None, bool]:
        """(None, _) when the attempt gave a final answer, else (retry reason, may have applied)."""
        if attempt.abandoned:
            return "head_changed", attempt.maybe_applied
        if attempt.lost:
            return "transport", attempt.maybe_applied
        if attempt.refusal is not None:
            return Code.Name(attempt.refusal.code).lower(), False
        assert attempt.result is not None
        code = attempt.result.error.code
        if classify(code) is Disposition.FINAL:
            return None, False
        return Code.Name(code).lower() if code in Code.values() else "unknown", write_may_have_applied(code)

    def _final(self, result: chain_pb2.WriteResult) -> chain_pb2.WriteResult:
        code = result.error.code
        if code == Code.OK:
            return result
        kind = FINAL_CHAIN_ERRORS[code]
        raise OpError(
            kind,
            result.error.message or kind.code.replace("_", " "),
            current_version=result.current_version if code == Code.PRECONDITION_FAILED else None,
        )

    def _outcome_unknown(self, idempotency_key: str, detail: str) -> OpError:
        log.warning("write outcome unknown idempotency_key=%s detail=%s", idempotency_key, detail)
        return OpError(
            ErrorKind.OUTCOME_UNKNOWN,
            f"the write may or may not have been applied; retry it with the same Idempotency-Key "
            f"({idempotency_key}) to learn its outcome ({detail})",
        )

    def _write_queue(self) -> BatchQueue[_Attempt]:
        return BatchQueue(
            max_ops=self.config.max_batch_ops,
            max_bytes=self.config.max_batch_bytes,
            max_pending=self.config.max_pending_writes,
            max_in_flight=WRITE_BATCHES_IN_FLIGHT,
            extra_in_flight=EXTRA_WRITE_BATCHES,
            extra_min_ops=EXTRA_WRITE_BATCH_MIN_OPS,
        )

    def _submit(self, address: str, op: chain_pb2.WriteOp) -> _Attempt:
        attempt = _Attempt(op, asyncio.get_running_loop().create_future())
        size = op.ByteSize() if op.kind == chain_pb2.OpKind.TXN else len(op.key) + len(op.value) + 64
        if not self._writes.submit(address, attempt, size):
            raise self._unavailable("too many writes waiting for the head")
        return attempt

    async def _send_batch(self, address: str, batch: list[_Attempt]) -> None:
        # Sent only over a connection: a batch that never left applied nothing, which no status
        # code of a failed call could tell apart from a connection lost after the head took it.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.config.attempt_timeout
        request_id = self.reachability.sent(address, loop.time())
        if not await self.channels.connected(address, self.config.attempt_timeout):
            log.info("write batch not sent head=%s ops=%d: no connection", address, len(batch))
            self.reachability.failed(address, request_id)
            self._lost(batch, maybe_applied=False)
            return
        batch = [a for a in batch if not a.done.done()]  # deadlines that passed meanwhile: not sent
        if not batch:
            self.reachability.answered(address, request_id)  # connected: the node is reachable
            return
        topology = self.topology
        epoch = topology.epoch if topology is not None else 0
        request = chain_pb2.WriteRequest(epoch=epoch, ops=[a.op for a in batch])
        for attempt in batch:
            attempt.sent = True
        self.metrics.batch_ops.observe(len(batch))
        sent_at = loop.time()
        try:
            reply = await self._node(address).Write(request, timeout=max(give_up - loop.time(), 0.001))
        except grpc.aio.AioRpcError as exc:
            self.reachability.failed(address, request_id)
            maybe = transport_failure_may_have_applied(exc.code())
            log.info("write batch failed head=%s ops=%d status=%s maybe_applied=%s detail=%s",
                     address, len(batch), exc.code().name, maybe, exc.details())
            self._lost(batch, maybe_applied=maybe)
            return
        self.reachability.answered(address, request_id)
        self.metrics.batch_seconds.observe(loop.time() - sent_at)
        if reply.error.code != Code.OK:
            for attempt in batch:
                attempt.refusal = reply.error
            return
        if len(reply.results) != len(batch):
            detail = f"head answered {len(reply.results)} results for {len(batch)} writes"
            log.warning("write batch malformed head=%s %s", address, detail)
            self._lost(batch, maybe_applied=True)
            return
        for attempt, result in zip(batch, reply.results, strict=True):
            attempt.result = result

    def _abandon_writes_to_former_heads(self, topology: Topology) -> None:
        """Writes waiting on a node that is no longer the head are retried at once at the new head.

        A head that is paused or cut off (a gray failure) answers nothing: without this, each write
        sent to it would hold its caller until the attempt timeout, long after the coordinator
        removed the node. Nothing the old head does after its removal can commit, and the retry
        carries the same request id, so the chain applies the write at most once; an attempt
        already sent counts as possibly applied (an outcome-unknown if the deadline then passes).
        """
        head = topology.head.address if topology.head is not None else None
        for address in self._writes.addresses - {head}:
            abandoned = self._writes.outstanding(address)
            if not abandoned:
                continue
            log.info("write attempts abandoned former_head=%s ops=%d epoch=%d", address, len(abandoned),
                     topology.epoch)
            for attempt in abandoned:
                attempt.abandoned = True
                attempt.maybe_applied = attempt.sent
                attempt.done.set_result(None)

    def _abandon_reads_to_former_members(self, topology: Topology) -> None:
        """Reads waiting on a node that no longer serves reads are retried at once at a member that does
        (a read has no effect, so giving up on one is always safe)."""
        serving = {m.address for m in topology.active}
        for address in self._reads.addresses - serving:
            for attempt in self._reads.outstanding(address):
                attempt.failure = "member_left"
                attempt.done.set_result(None)

    @staticmethod
    def _lost(batch: list[_Attempt], *, maybe_applied: bool) -> None:
        for attempt in batch:
            attempt.lost = True
            attempt.maybe_applied = maybe_applied

    # ---- reads ----

    async def read(self, key: bytes, consistency: int) -> chain_pb2.ReadReply:
        """Read from one active member; NOT_FOUND and other final answers raise OpError."""
        check_consistency(consistency)  # one bad read must not get its whole batch refused
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        retry = Retry(deadline, RETRY_BACKOFF, self.rng)
        avoid: frozenset[str] = frozenset()
        op = chain_pb2.ReadOp(key=key, consistency=consistency)
        while True:
            topology = self.topology
            if topology is None:
                raise self._unavailable("the proxy has not learned the chain's topology yet")
            member = self.balancer.pick(topology.active, avoid)
            if member is None:
                reason = "no active member"
            else:
                attempt = self._submit_read(member.address, op)
                self.balancer.started(member)
                timer = loop.call_at(deadline, _expire, attempt.done)
                try:
                    await attempt.done
                finally:
                    timer.cancel()
                    self.balancer.finished(member)
                if attempt.done.result() is _EXPIRED:
                    raise self._unavailable("no chain member answered the read before the deadline")
                if attempt.resend:
                    continue  # not a failure: the member answered the reads before it, and will this one
                reply = attempt.reply
                if reply is not None:
                    code = reply.error.code
                    if code == Code.OK:
                        self._count_member_read(member.id)
                        return reply
                    if classify(code) is Disposition.FINAL:
                        kind = FINAL_CHAIN_ERRORS[code]
                        raise OpError(kind, reply.error.message or kind.code.replace("_", " "))
                    reason = Code.Name(code).lower() if code in Code.values() else "unknown"
                else:
                    reason = attempt.failure or "unknown"
                avoid = avoid | {member.id}
            self.metrics.retries.labels("read", reason).inc()
            delay = retry.failed(loop.time(), reason)
            if delay is None:
                raise self._unavailable(f"no chain member could serve the read ({reason})")
            await self._pause(delay)

    def _count_member_read(self, member_id: str) -> None:
        counter = self._member_reads.get(member_id)
        if counter is None:
            counter = self._member_reads[member_id] = self.metrics.member_reads.labels(member_id)
        counter.inc()

    def _read_queue(self) -> BatchQueue[_ReadAttempt]:
        return BatchQueue(
            max_ops=self.config.max_read_batch_ops,
            max_bytes=self.config.max_batch_bytes,
            max_pending=self.config.max_pending_reads,
        )

    def _submit_read(self, address: str, op: chain_pb2.ReadOp) -> _ReadAttempt:
        attempt = _ReadAttempt(op, asyncio.get_running_loop().create_future())
        if not self._reads.submit(address, attempt, len(op.key) + 16):
            raise self._unavailable("too many reads waiting for the chain")
        return attempt

    async def _send_read_batch(self, address: str, batch: list[_ReadAttempt]) -> None:
        topology = self.topology
        epoch = topology.epoch if topology is not None else 0
        request = chain_pb2.ReadBatchRequest(epoch=epoch, ops=[a.op for a in batch])
        self.metrics.read_batch_ops.observe(len(batch))
        request_id = self.reachability.sent(address, asyncio.get_running_loop().time())
        try:
            reply = await self._read_streams.read_batch(address, request, self.config.attempt_timeout)
        except StreamCallError as exc:
            self.reachability.failed(address, request_id)
            failure = f"transport_{exc.code().name.lower()}"
            log.debug("read batch failed member=%s reads=%d reason=%s", address, len(batch), failure)
            for attempt in batch:
                attempt.failure = failure
            return
        self.reachability.answered(address, request_id)
        code = reply.error.code
        if code == Code.INVALID_ARGUMENT:
            # About the request, not the member: final for every read in it (another member
            # would refuse it too). Reads are checked before batching, so this means a mismatch
            # between the proxy and the node, not one client's bad input.
            log.warning("read batch refused member=%s reads=%d message=%s", address, len(batch), reply.error.message)
            for attempt in batch:
                attempt.reply = chain_pb2.ReadReply(error=reply.error)
            return
        if code != Code.OK:
            failure = Code.Name(code).lower() if code in Code.values() else "unknown"
            for attempt in batch:
                attempt.failure = failure
            return
        answered = len(reply.results)
        if answered > len(batch) or (answered == 0 and batch):
            log.warning("read batch malformed member=%s results=%d reads=%d", address, answered, len(batch))
            for attempt in batch:
                attempt.failure = "malformed_reply"
            return
        for attempt, result in zip(batch, reply.results, strict=False):
            attempt.reply = result
        for attempt in batch[answered:]:
            attempt.resend = True

    # ---- ranges ----

    async def range(self, request: chain_pb2.RangeRequest) -> chain_pb2.RangeReply:
        """One page of a range from an active member, picked as for reads; retried elsewhere on a
        member's failure or its COMPACTED (members keep versions of their own reach); 410 COMPACTED
        only when every active member refuses the snapshot."""
        loop = asyncio.get_running_loop()
        retry = Retry(loop.time() + self.config.request_timeout, RETRY_BACKOFF, self.rng)
        avoid: frozenset[str] = frozenset()
        refused: dict[str, int] = {}  # member id -> the oldest snapshot it still reads
        while True:
            topology = self.topology
            if topology is None:
                raise self._unavailable("the proxy has not learned the chain's topology yet")
            member = self.balancer.pick(topology.active, avoid)
            if member is None:
                reason = "no active member"
            else:
                request.epoch = topology.epoch
                self.balancer.started(member)
                try:
                    reply = await self._node(member.address).Range(request, timeout=self.config.attempt_timeout)
                except grpc.aio.AioRpcError as exc:
                    reply, reason = None, f"transport_{exc.code().name.lower()}"
                finally:
                    self.balancer.finished(member)
                if reply is not None:
                    code = reply.error.code
                    if code == Code.OK:
                        self._count_member_read(member.id)
                        return reply
                    if code == Code.COMPACTED:
                        # Members keep versions of their own reach (a restarted one keeps less):
                        # refused only when no active member still has the snapshot.
                        refused[member.id] = reply.compact_version
                        oldest = refused_everywhere(refused, topology)
                        if oldest is not None:
                            raise compacted(oldest, "the snapshot is no longer readable")
                        avoid = avoid | {member.id}
                        continue
                    if classify(code) is Disposition.FINAL:
                        kind = FINAL_CHAIN_ERRORS[code]
                        raise OpError(kind, reply.error.message or kind.code.replace("_", " "))
                    reason = Code.Name(code).lower() if code in Code.values() else "unknown"
                avoid = avoid | {member.id}
            self.metrics.retries.labels("range", reason).inc()
            delay = retry.failed(loop.time(), reason)
            if delay is None:
                raise self._unavailable(f"no chain member could serve the range ({reason})")
            await self._pause(delay)

    # ---- watches ----

    async def watch(
        self, start: bytes, end: bytes, after_version: int
    ) -> AsyncIterator[tuple[int, list[chain_pb2.WatchEvent]]]:
        """Every committed change to [start, end) after `after_version`: (position, events) with the
        events of one version each, and `position` the version a resumed watch starts after.

        Served from one active member's committed stream; when that member fails or leaves, the
        watch resumes from another just after the last version delivered, so the caller sees no
        gap and no duplicate. Yields no events on each heartbeat of the member (the position may
        advance: nothing in the range changed up to the member's commit point). Raises
        OpError(COMPACTED) when the member no longer keeps the history after `after_version`,
        and UNAVAILABLE when no member serves it for a whole request timeout.
        """
        loop = asyncio.get_running_loop()
        after = after_version
        retry: Retry | None = None
        avoid: frozenset[str] = frozenset()
        refused: dict[str, int] = {}  # member id -> its compact point, for the current `after`
        while True:
            topology = self.topology
            member = None if topology is None else self.balancer.pick(topology.active, avoid)
            reason = "no active member"
            if topology is not None and member is not None:
                request = chain_pb2.WatchRequest(epoch=topology.epoch, start=start, end=end, after_version=after)
                stream = self._node(member.address).Watch(request)
                self.balancer.started(member)  # a long-lived load: watches spread like reads
                try:
                    async for batch in stream:
                        code = batch.error.code
                        if code == Code.COMPACTED:
                            # Members keep histories of their own length (a restarted one keeps
                            # less): refused only when no active member has it.
                            refused[member.id] = batch.compact_version
                            oldest = refused_everywhere(refused, topology)
                            if oldest is not None:
                                raise compacted(oldest, f"no history after version {after}")
                            reason = "compacted"
                            break
                        if code != Code.OK:
                            reason = Code.Name(code).lower() if code in Code.values() else "unknown"
                            break
                        retry, avoid = None, frozenset()  # the member serves: failures start afresh
                        refused.clear()
                        for group in group_by_version(batch.events, after):
                            after = group[0].version
                            yield after, group
                        if batch.committed_seq > after:
                            after = batch.committed_seq
                            yield after, []
                        elif not batch.events:
                            yield after, []
                    else:
                        reason = "stream_ended"
                except grpc.aio.AioRpcError as exc:
                    reason = f"transport_{exc.code().name.lower()}"
                finally:
                    stream.cancel()
                    self.balancer.finished(member)
                avoid = avoid | {member.id}
                log.info("watch moves member=%s after=%d reason=%s", member.id, after, reason)
            self.metrics.retries.labels("watch", reason).inc()
            if reason == "compacted":
                continue  # straight to the next member
            if retry is None:
                retry = Retry(loop.time() + self.config.request_timeout, RETRY_BACKOFF, self.rng)
            delay = retry.failed(loop.time(), reason)
            if delay is None:
                raise self._unavailable(f"no chain member could serve the watch ({reason})")
            await self._pause(delay)

    # ---- status ----

    async def node_status(self, address: str, timeout: float) -> chain_pb2.NodeStatus | None:
        try:
            return await self._node(address).GetStatus(chain_pb2.StatusRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return None

    async def close(self) -> None:
        self._writes.cancel()
        self._reads.cancel()
        self._read_streams.close()
        await self.channels.close()
