"""A stand-in for one chain and its coordinator, for testing the proxy over real gRPC.

Every member is a ChainNode gRPC server on 127.0.0.1 (ephemeral port) sharing one store; the
head sequences writes (versions are a gap-free seq), honours CAS / create-only and remembers
request ids, as the real chain promises. The coordinator serves WatchChains, GetChain and
GetClusterStatus, and records ReportUnreachable. Scripted faults let a test break exactly one thing:

- "bump_epoch": the coordinator moves to epoch+1 just before the head sees a Write, so that
  Write (sent with the old epoch) is refused with WRONG_EPOCH.
- "drop_reply": the head applies the Write, then fails the RPC as if the reply were lost.
- "hang": the head sleeps past the proxy's attempt timeout before answering (`unhang` wakes it),
  as a paused head does.
- "outcome_unknown": the head answers OUTCOME_UNKNOWN for every op (applying nothing).
- "not_head": the head refuses the Write with NOT_HEAD.

`write_abort` (status, message) makes every member fail every Write with that gRPC status and
message before looking at it: status and wording can then disagree, as they may in the wild.

Range reads serve any snapshot from the first kept version (`compact_version`) on; Txn writes
evaluate their compares at the head and apply the chosen branch under one seq; Watch streams
the change log after a version (a heartbeat when idle) and ends a stream when `cut_watches`
is called, as a member that fails does.

Reads (`read_faults`, per member): "hang" (until `unhang`), "unavailable", "lease_expired", "invalid_argument" (the
whole batch refused as malformed), "one_per_reply" (a reply that stops short, as a node's does at
its message size limit). As a real node does, a batch with an unknown consistency is refused whole.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from keychain.node.core import may_put
from keychain.node.wire import write_op_from_pb

from keychain.proto import chain_pb2, chain_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc

Code = chain_pb2.Code


@dataclass
class Stored:
    value: bytes
    version: int
    deleted: bool = False


@dataclass
class ChainState:
    chain: str
    epoch: int = 1
    members: list[chain_pb2.Member] = field(default_factory=list)
    seq: int = 0
    data: dict[bytes, Stored] = field(default_factory=dict)
    outcomes: dict[str, chain_pb2.WriteResult] = field(default_factory=dict)
    applied: Counter[str] = field(default_factory=Counter)  # request id -> times applied
    write_attempts: list[list[str]] = field(default_factory=list)  # request ids per Write received
    reads: Counter[str] = field(default_factory=Counter)  # member id -> reads served
    writes: Counter[str] = field(default_factory=Counter)
    faults: deque[str] = field(default_factory=deque)
    read_batches: list[tuple[str, int]] = field(default_factory=list)  # (member id, reads) per ReadBatch
    read_consistencies: list[int] = field(default_factory=list)  # each read op's consistency, in order
    # member id -> how its ReadBatch misbehaves: "hang" (sleeps hang_seconds first), "unavailable"
    # (the call fails), "lease_expired" (refused as a whole), "one_per_reply" (answers only the first read)
    read_faults: dict[str, str] = field(default_factory=dict)
    sticky_fault: str | None = None
    unreachable_reports: list[coordinator_pb2.ReportUnreachableRequest] = field(default_factory=list)
    write_abort: tuple[grpc.StatusCode, str] | None = None  # every Write fails so, nothing applied
    full: set[str] = field(default_factory=set)  # members whose disk is full: the head refuses PUTs
    hang_seconds: float = 0.5
    status_hangs: bool = False  # GetStatus sleeps hang_seconds first (a node that answers nothing)
    changes: list[tuple[int, bytes, Stored]] = field(default_factory=list)  # (seq, key, stored): the log
    compact_version: int = 0  # ranges and watches below this version answer COMPACTED
    member_compact: dict[str, int] = field(default_factory=dict)  # member id -> its own, higher one
    watch_generation: int = 0  # bumped by cut_watches: open Watch streams end
    watches: Counter[str] = field(default_factory=Counter)  # member id -> Watch streams opened

    def config(self) -> chain_pb2.ChainConfig:
        return chain_pb2.ChainConfig(chain=self.chain, epoch=self.epoch, members=self.members)


class NodeDouble(chain_pb2_grpc.ChainNodeServicer):
    def __init__(self, double: ChainDouble, member_id: str) -> None:
        self.double = double
        self.id = member_id

    def _error(self, code: int, message: str = "") -> chain_pb2.Error:
        return chain_pb2.Error(code=code, message=message, epoch=self.double.state.epoch)

    def _is_head(self) -> bool:
        active = [m for m in self.double.state.members if m.state == chain_pb2.MemberState.ACTIVE]
        return bool(active) and active[0].id == self.id

    def Write(self, request: chain_pb2.WriteRequest, context: grpc.ServicerContext) -> chain_pb2.WriteReply:
        double = self.double
        with double.lock:
            fault = double.state.faults.popleft() if double.state.faults else double.state.sticky_fault
            double.state.write_attempts.append([op.request_id for op in request.ops])
            abort = double.state.write_abort
        if abort is not None:
            context.abort(*abort)
        if fault == "bump_epoch":
            double.reconfigure(double.state.members)
        if fault == "hang":
            double.unhang.wait(double.state.hang_seconds)
        with double.lock:
            state = double.state
            if request.epoch != state.epoch:
                return chain_pb2.WriteReply(error=self._error(Code.WRONG_EPOCH, "stale epoch"))
            if not self._is_head() or fault == "not_head":
                return chain_pb2.WriteReply(error=self._error(Code.NOT_HEAD))
            if fault == "outcome_unknown":
                results = [
                    chain_pb2.WriteResult(error=self._error(Code.OUTCOME_UNKNOWN, "lost the successor"))
                    for _ in request.ops
                ]
                return chain_pb2.WriteReply(results=results)
            results = [self._refuse_full(op) or double.apply(op) for op in request.ops]
        if fault == "drop_reply":
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset after the write was applied")
        return chain_pb2.WriteReply(results=results)

    def _refuse_full(self, op: chain_pb2.WriteOp) -> chain_pb2.WriteResult | None:
        """A PUT (or a transaction that may put) while a member's disk is full, refused before sequencing
        by the head's own rule."""
        full = sorted(self.double.state.full)
        if not full or not may_put(write_op_from_pb(op)):
            return None
        return chain_pb2.WriteResult(error=self._error(Code.INSUFFICIENT_STORAGE, f"the disk of node {full[0]} is full"))

    def Read(self, request: chain_pb2.ReadRequest, context: grpc.ServicerContext) -> chain_pb2.ReadReply:
        with self.double.lock:
            state = self.double.state
            if request.epoch != state.epoch:
                return chain_pb2.ReadReply(error=self._error(Code.WRONG_EPOCH))
            return self._read(request.key)

    def _read(self, key: bytes) -> chain_pb2.ReadReply:
        """One key as this member serves it; the caller holds the lock."""
        state = self.double.state
        state.reads[self.id] += 1
        stored = state.data.get(key)
        if stored is None or stored.deleted:
            return chain_pb2.ReadReply(error=self._error(Code.NOT_FOUND, "no such key"))
        return chain_pb2.ReadReply(value=stored.value, version=stored.version)

    def ReadBatch(
        self, request: chain_pb2.ReadBatchRequest, context: grpc.ServicerContext
    ) -> chain_pb2.ReadBatchReply:
        double = self.double
        with double.lock:
            state = double.state
            state.read_batches.append((self.id, len(request.ops)))
            state.read_consistencies.extend(op.consistency for op in request.ops)
            fault = state.read_faults.get(self.id)
        if fault == "hang":
            double.unhang.wait(state.hang_seconds)
        if fault == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "member down")
        with double.lock:
            if request.epoch != state.epoch:
                return chain_pb2.ReadBatchReply(error=self._error(Code.WRONG_EPOCH))
            if fault == "lease_expired":
                return chain_pb2.ReadBatchReply(error=self._error(Code.LEASE_EXPIRED, "lease lapsed"))
            known = chain_pb2.Consistency.values()
            if fault == "invalid_argument" or any(op.consistency not in known for op in request.ops):
                return chain_pb2.ReadBatchReply(error=self._error(Code.INVALID_ARGUMENT, "bad read op"))
            ops = request.ops[:1] if fault == "one_per_reply" else request.ops
            return chain_pb2.ReadBatchReply(results=[self._read(op.key) for op in ops])

    def ReadStream(
        self, request_iterator: Iterator[chain_pb2.ReadBatchRequest], context: grpc.ServicerContext
    ) -> Iterator[chain_pb2.ReadBatchReply]:
        """ReadBatch on a stream, one request after the other (a proxy keeps one batch out per member)."""
        for request in request_iterator:
            reply = self.ReadBatch(request, context)
            reply.call = request.call
            yield reply

    def Range(self, request: chain_pb2.RangeRequest, context: grpc.ServicerContext) -> chain_pb2.RangeReply:
        with self.double.lock:
            state = self.double.state
            if request.epoch != state.epoch:
                return chain_pb2.RangeReply(error=self._error(Code.WRONG_EPOCH))
            snapshot = request.snapshot or state.seq
            compact = self._compact_version()
            if snapshot < compact or snapshot > state.seq:
                return chain_pb2.RangeReply(
                    error=self._error(Code.COMPACTED, "snapshot not kept"), compact_version=compact
                )
            state.reads[self.id] += 1
            newest: dict[bytes, Stored] = {}
            for seq, key, stored in state.changes:
                if seq <= snapshot and request.start <= key and (not request.end or key < request.end):
                    newest[key] = stored
            keys = sorted(k for k, v in newest.items() if not v.deleted)
            page = keys[: request.limit]
            items = [
                chain_pb2.RangeItem(
                    key=k, value=b"" if request.keys_only else newest[k].value, version=newest[k].version
                )
                for k in page
            ]
            return chain_pb2.RangeReply(items=items, snapshot=snapshot, more=len(keys) > len(page))

    def _compact_version(self) -> int:
        state = self.double.state
        return max(state.compact_version, state.member_compact.get(self.id, 0))

    def Watch(self, request: chain_pb2.WatchRequest, context: grpc.ServicerContext):
        double = self.double
        with double.lock:
            state = double.state
            state.watches[self.id] += 1
            generation = state.watch_generation
            if request.epoch != state.epoch:
                yield chain_pb2.WatchBatch(error=self._error(Code.WRONG_EPOCH))
                return
            if request.after_version < self._compact_version():
                yield chain_pb2.WatchBatch(
                    error=self._error(Code.COMPACTED, "history not kept"), compact_version=self._compact_version()
                )
                return
        after = request.after_version
        while context.is_active() and not double.closing:
            with double.changed:
                if double.state.watch_generation != generation:
                    return  # the member failed: the stream breaks
                events = [
                    chain_pb2.WatchEvent(
                        version=seq,
                        kind=chain_pb2.EntryKind.ENTRY_DELETE if stored.deleted else chain_pb2.EntryKind.ENTRY_PUT,
                        key=key,
                        value=stored.value,
                    )
                    for seq, key, stored in double.state.changes
                    if seq > after and request.start <= key and (not request.end or key < request.end)
                ]
                committed = double.state.seq
                if not events and committed == after:
                    double.changed.wait(0.2)
            after = committed
            yield chain_pb2.WatchBatch(events=events, committed_seq=committed)

    def GetStatus(
        self, request: chain_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> chain_pb2.NodeStatus:
        if self.double.state.status_hangs:
            self.double.unhang.wait(self.double.state.hang_seconds)
        with self.double.lock:
            state = self.double.state
            ids = [m.id for m in state.members]
            active = [m.id for m in state.members if m.state == chain_pb2.MemberState.ACTIVE]
            role = "syncing" if self.id not in active else ("head" if active[0] == self.id else "tail")
            return chain_pb2.NodeStatus(
                id=self.id,
                chain=state.chain,
                epoch=state.epoch,
                role=role if self.id in ids else "none",
                last_seq=state.seq,
                committed_seq=state.seq,
                reads=state.reads[self.id],
                writes=state.writes[self.id],
                lease_valid=True,
                keys=len(state.data),
                storage_alarm=self.id in state.full,
            )


class CoordinatorDouble(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(self, double: ChainDouble) -> None:
        self.double = double

    def WatchChains(self, request: coordinator_pb2.WatchRequest, context: grpc.ServicerContext):
        double = self.double
        sent = None
        while context.is_active() and not double.closing:
            with double.changed:
                silent = double.silent_watch and sent is not None
                if double.published and double.state.epoch != sent and not silent:
                    sent = double.state.epoch
                    config = double.state.config()
                else:
                    double.changed.wait(0.05)
                    continue
            yield config

    def GetChain(self, request: coordinator_pb2.GetChainRequest, context: grpc.ServicerContext):
        with self.double.lock:
            if not self.double.published or request.chain != self.double.state.chain:
                return coordinator_pb2.ChainReply(
                    error=coordinator_pb2.Error(code=coordinator_pb2.Code.NOT_FOUND, message="no such chain")
                )
            return coordinator_pb2.ChainReply(config=self.double.state.config())

    def ReportUnreachable(self, request: coordinator_pb2.ReportUnreachableRequest, context: grpc.ServicerContext):
        with self.double.lock:
            self.double.state.unreachable_reports.append(request)
        return coordinator_pb2.ReportReply(accepted=True)

    def GetClusterStatus(self, request: coordinator_pb2.ClusterStatusRequest, context: grpc.ServicerContext):
        double = self.double
        with double.lock:
            state = double.state
            health = [
                coordinator_pb2.MemberHealth(
                    id=m.id,
                    healthy=True,
                    reads=state.reads[m.id],
                    writes=state.writes[m.id],
                    last_seq=state.seq,
                    storage_alarm=m.id in state.full,
                )
                for m in state.members
            ]
            chains = (
                [coordinator_pb2.ChainStatus(config=state.config(), health=health)]
                if double.published
                else []
            )
            return coordinator_pb2.ClusterStatus(
                leader="coord-1",
                members=[
                    coordinator_pb2.CoordinatorMember(id="coord-1", address=double.coordinator, role="leader")
                ],
                chains=chains,
            )


class ChainDouble:
    """Start with `ChainDouble(members=3).start()`; `stop()` when done (or use `with`)."""

    def __init__(self, chain: str = "test", members: int = 3, *, publish: bool = True) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.state = ChainState(chain)
        self.published = publish
        self.silent_watch = False  # watch streams send the first configuration, then nothing
        self.unhang = threading.Event()  # ends every hanging Write at once
        self.closing = False
        self._member_count = members
        self._servers: list[grpc.Server] = []
        self.coordinator = ""

    def _server(self) -> tuple[grpc.Server, int]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        port = server.add_insecure_port("127.0.0.1:0")
        self._servers.append(server)
        return server, port

    def start(self) -> ChainDouble:
        members = []
        for index in range(1, self._member_count + 1):
            server, port = self._server()
            member_id = f"node-{index}"
            chain_pb2_grpc.add_ChainNodeServicer_to_server(NodeDouble(self, member_id), server)
            server.start()
            members.append(chain_pb2.Member(id=member_id, address=f"127.0.0.1:{port}"))
        server, port = self._server()
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorDouble(self), server)
        server.start()
        self.coordinator = f"127.0.0.1:{port}"
        with self.lock:
            self.state.members = members
        return self

    def stop(self) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.unhang.set()
        for server in self._servers:
            server.stop(grace=None)

    def __enter__(self) -> ChainDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests do ----

    def publish(self) -> None:
        with self.changed:
            self.published = True
            self.changed.notify_all()

    def reconfigure(self, members: list[chain_pb2.Member]) -> None:
        """A new configuration at epoch + 1, pushed to watchers."""
        with self.changed:
            self.state.members = list(members)
            self.state.epoch += 1
            self.changed.notify_all()

    def cut_watches(self) -> None:
        """Every open Watch stream ends, as when its member fails."""
        with self.changed:
            self.state.watch_generation += 1
            self.changed.notify_all()

    def inject(self, *faults: str) -> None:
        with self.lock:
            self.state.faults.extend(faults)

    def member(self, member_id: str) -> chain_pb2.Member:
        return next(m for m in self.state.members if m.id == member_id)

    def apply(self, op: chain_pb2.WriteOp) -> chain_pb2.WriteResult:
        """The head's sequencing of one op; the caller holds the lock."""
        state = self.state
        if op.request_id in state.outcomes:
            return state.outcomes[op.request_id]
        if op.kind == chain_pb2.OpKind.TXN:
            result = self._apply_txn(op.txn)
            state.outcomes[op.request_id] = result
            state.applied[op.request_id] += 1
            return result
        stored = state.data.get(op.key)
        current = 0 if stored is None or stored.deleted else stored.version
        if (op.HasField("if_version") and op.if_version != current) or (op.if_absent and current != 0):
            result = chain_pb2.WriteResult(
                error=chain_pb2.Error(code=Code.PRECONDITION_FAILED, message="version mismatch"),
                current_version=current,
            )
        else:
            state.seq += 1
            deleted = op.kind == chain_pb2.OpKind.DELETE
            state.data[op.key] = Stored(b"" if deleted else op.value, state.seq, deleted)
            state.changes.append((state.seq, op.key, state.data[op.key]))
            self.changed.notify_all()
            state.applied[op.request_id] += 1
            for member in state.members:
                state.writes[member.id] += 1
            result = chain_pb2.WriteResult(version=state.seq)
        state.outcomes[op.request_id] = result
        return result

    def _current(self, key: bytes) -> Stored | None:
        stored = self.state.data.get(key)
        return None if stored is None or stored.deleted else stored

    def _holds(self, compare: chain_pb2.Compare) -> bool:
        stored = self._current(compare.key)
        target = compare.WhichOneof("target")
        if target == "version":
            have, want = (0 if stored is None else stored.version), compare.version
        elif target == "exists":
            have, want = int(stored is not None), int(compare.exists)
        else:
            if stored is None:
                return compare.result == chain_pb2.CompareResult.NOT_EQUAL
            have, want = stored.value, compare.value  # type: ignore[assignment]
        return {
            chain_pb2.CompareResult.EQUAL: have == want,
            chain_pb2.CompareResult.NOT_EQUAL: have != want,
            chain_pb2.CompareResult.GREATER: have > want,
            chain_pb2.CompareResult.LESS: have < want,
        }[compare.result]

    def _apply_txn(self, txn: chain_pb2.Txn) -> chain_pb2.WriteResult:
        """The head's transaction: compares, then the branch's ops under one seq."""
        state = self.state
        succeeded = all(self._holds(c) for c in txn.compare)
        branch = txn.success if succeeded else txn.failure
        writes = any(op.kind != chain_pb2.TxnOpKind.TXN_GET for op in branch)
        version = state.seq + 1 if writes else state.seq
        results = []
        for op in branch:
            if op.kind == chain_pb2.TxnOpKind.TXN_GET:
                stored = self._current(op.key)
                results.append(
                    chain_pb2.TxnOpResult(found=stored is not None, value=b"" if stored is None else stored.value,
                                          version=0 if stored is None else stored.version)
                )
                continue
            deleted = op.kind == chain_pb2.TxnOpKind.TXN_DELETE
            state.data[op.key] = Stored(b"" if deleted else op.value, version, deleted)
            state.changes.append((version, op.key, state.data[op.key]))
            results.append(chain_pb2.TxnOpResult(version=version))
        if writes:
            state.seq = version
            for member in state.members:
                state.writes[member.id] += 1
            self.changed.notify_all()
        return chain_pb2.WriteResult(version=version, succeeded=succeeded, results=results)
