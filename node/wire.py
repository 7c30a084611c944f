"""Mapping between the core's value types (keychain.node.messages) and the chain.proto messages.

One function per direction and message, so the gRPC shell stays a thin translator. Decoding checks
what protobuf cannot: enum values in range and non-negative sizes are guaranteed by the types, so
the only rejections here are unknown enum numbers (a newer peer) and a LinkDown/LinkUp without a body.
"""

from __future__ import annotations

from keychain.node.messages import (
    OK,
    Ack,
    Batch,
    ChainConfig,
    Code,
    Compare,
    CompareResult,
    CompareTarget,
    Consistency,
    Entry,
    EntryKind,
    Error,
    Hello,
    KeyVersion,
    Member,
    MemberState,
    NodeStatus,
    OpKind,
    RangeItem,
    RangeRead,
    RangeReply,
    ReadReply,
    RequestOutcome,
    TransferChunk,
    Txn,
    TxnOp,
    TxnOpKind,
    TxnOpResult,
    TxnWrite,
    VersionQueryReply,
    Welcome,
    WriteOp,
    WriteReply,
    WriteResult,
)

from keychain.proto import chain_pb2 as pb


class WireError(ValueError):
    """A protobuf message the core cannot take (an unknown enum value, a missing body)."""


def _enum[E: (Code, MemberState, OpKind, EntryKind, Consistency, CompareResult, TxnOpKind)](
        cls: type[E], value: int) -> E:
    try:
        return cls(value)
    except ValueError:
        raise WireError(f"unknown {cls.__name__} value {value}") from None


# ---- common ----


def error_to_pb(e: Error) -> pb.Error:
    return pb.Error(code=int(e.code), message=e.message, epoch=e.epoch)


def error_from_pb(m: pb.Error) -> Error:
    return Error(_enum(Code, m.code), m.message, m.epoch)


def config_to_pb(c: ChainConfig) -> pb.ChainConfig:
    return pb.ChainConfig(chain=c.chain, epoch=c.epoch, members=[
        pb.Member(id=m.id, address=m.address, state=int(m.state)) for m in c.members])


def config_from_pb(m: pb.ChainConfig) -> ChainConfig:
    """Raises WireError or ValueError (from ChainConfig.validate) for an unusable configuration."""
    config = ChainConfig(m.chain, m.epoch, tuple(
        Member(x.id, x.address, _enum(MemberState, x.state)) for x in m.members))
    config.validate()
    return config


# ---- writes and reads ----


def compare_to_pb(c: Compare) -> pb.Compare:
    m = pb.Compare(key=c.key, result=int(c.result))
    if c.target == CompareTarget.VERSION:
        m.version = c.version
    elif c.target == CompareTarget.VALUE:
        m.value = c.value
    else:
        m.exists = c.exists
    return m


def compare_from_pb(m: pb.Compare) -> Compare:
    which = m.WhichOneof("target")
    result = _enum(CompareResult, m.result)
    if which == "value":
        return Compare(m.key, result, CompareTarget.VALUE, value=m.value)
    if which == "exists":
        return Compare(m.key, result, CompareTarget.EXISTS, exists=m.exists)
    return Compare(m.key, result, CompareTarget.VERSION, version=m.version)  # unset: version 0


def txn_to_pb(t: Txn) -> pb.Txn:
    def ops(xs: tuple[TxnOp, ...]) -> list[pb.TxnOp]:
        return [pb.TxnOp(kind=int(o.kind), key=o.key, value=o.value) for o in xs]

    return pb.Txn(compare=[compare_to_pb(c) for c in t.compare], success=ops(t.success), failure=ops(t.failure))


def txn_from_pb(m: pb.Txn) -> Txn:
    def ops(xs: object) -> tuple[TxnOp, ...]:
        return tuple(TxnOp(_enum(TxnOpKind, o.kind), o.key, o.value) for o in xs)  # type: ignore[attr-defined]

    return Txn(tuple(compare_from_pb(c) for c in m.compare), ops(m.success), ops(m.failure))


def _results_to_pb(results: tuple[TxnOpResult, ...]) -> list[pb.TxnOpResult]:
    return [pb.TxnOpResult(found=r.found, value=r.value, version=r.version) for r in results]


def _results_from_pb(results: object) -> tuple[TxnOpResult, ...]:
    return tuple(TxnOpResult(r.found, r.value, r.version) for r in results)  # type: ignore[attr-defined]


def write_op_to_pb(op: WriteOp) -> pb.WriteOp:
    m = pb.WriteOp(request_id=op.request_id, key=op.key, kind=int(op.kind), value=op.value, if_absent=op.if_absent)
    if op.if_version is not None:
        m.if_version = op.if_version
    if op.txn is not None:
        m.txn.CopyFrom(txn_to_pb(op.txn))
    return m


_OP_KINDS = {int(k): k for k in OpKind}


def write_op_from_pb(m: pb.WriteOp) -> WriteOp:
    kind = _OP_KINDS.get(m.kind)  # not _enum: every op of every write request comes through here
    if kind is None:
        raise WireError(f"unknown OpKind value {m.kind}")
    return WriteOp(
        request_id=m.request_id,
        key=m.key,
        kind=kind,
        value=m.value,
        if_version=m.if_version if m.HasField("if_version") else None,
        if_absent=m.if_absent,
        txn=txn_from_pb(m.txn) if kind == OpKind.TXN else None,
    )


def write_request_to_pb(epoch: int, ops: list[WriteOp]) -> pb.WriteRequest:
    return pb.WriteRequest(epoch=epoch, ops=[write_op_to_pb(op) for op in ops])


def write_request_from_pb(m: pb.WriteRequest) -> tuple[int, list[WriteOp]]:
    return m.epoch, [write_op_from_pb(op) for op in m.ops]


def write_reply_to_pb(r: WriteReply) -> pb.WriteReply:
    # On the write path, one result per write: fields at their default (an OK error, no transaction
    # results) are left unset, which reads back the same and costs a fraction of building them.
    # Filled in place, like link_down_to_pb's entries; a plain write's result is its version alone.
    m = pb.WriteReply()
    add = m.results.add
    for x in r.results:
        plain = x.error is OK or x.error == OK
        if plain and not (x.current_version or x.succeeded or x.results):
            add(version=x.version)
            continue
        fields: dict[str, object] = {"version": x.version}
        if not plain:
            fields["error"] = error_to_pb(x.error)
        if x.current_version:
            fields["current_version"] = x.current_version
        if x.succeeded:
            fields["succeeded"] = True
        if x.results:
            fields["results"] = _results_to_pb(x.results)
        add(**fields)  # type: ignore[arg-type]
    if not (r.error is OK or r.error == OK):
        m.error.CopyFrom(error_to_pb(r.error))
    return m


def write_reply_from_pb(m: pb.WriteReply) -> WriteReply:
    return WriteReply(error_from_pb(m.error), tuple(
        WriteResult(error_from_pb(x.error), x.version, x.current_version, x.succeeded, _results_from_pb(x.results))
        for x in m.results))


def read_request_from_pb(m: pb.ReadRequest) -> tuple[int, bytes, Consistency]:
    return m.epoch, m.key, _enum(Consistency, m.consistency)


def read_reply_to_pb(r: ReadReply) -> pb.ReadReply:
    return pb.ReadReply(error=error_to_pb(r.error), value=r.value, version=r.version)


def read_reply_from_pb(m: pb.ReadReply) -> ReadReply:
    return ReadReply(error_from_pb(m.error), m.value, m.version)


def read_batch_request_to_pb(epoch: int, reads: list[tuple[bytes, Consistency]]) -> pb.ReadBatchRequest:
    return pb.ReadBatchRequest(epoch=epoch, ops=[pb.ReadOp(key=k, consistency=int(c)) for k, c in reads])


def read_batch_request_from_pb(m: pb.ReadBatchRequest) -> tuple[int, list[tuple[bytes, Consistency]]]:
    return m.epoch, [(op.key, _enum(Consistency, op.consistency)) for op in m.ops]


def read_batch_reply_to_pb(error: Error, results: list[ReadReply]) -> pb.ReadBatchReply:
    m = pb.ReadBatchReply(error=error_to_pb(error))
    add = m.results.add  # built in place: no per-result message copied into the list
    for r in results:
        if r.error == OK:  # the common case leaves the error field at its default
            add(value=r.value, version=r.version)
        else:
            add(error=error_to_pb(r.error), value=r.value, version=r.version)
    return m


def read_batch_reply_from_pb(m: pb.ReadBatchReply) -> tuple[Error, list[ReadReply]]:
    return error_from_pb(m.error), [read_reply_from_pb(r) for r in m.results]


def range_request_to_pb(epoch: int, r: RangeRead) -> pb.RangeRequest:
    return pb.RangeRequest(epoch=epoch, start=r.start, end=r.end, limit=r.limit, keys_only=r.keys_only,
                           consistency=int(r.consistency), snapshot=r.snapshot)


def range_request_from_pb(m: pb.RangeRequest) -> tuple[int, RangeRead]:
    return m.epoch, RangeRead(m.start, m.end, m.limit, m.keys_only, _enum(Consistency, m.consistency), m.snapshot)


def range_reply_to_pb(r: RangeReply) -> pb.RangeReply:
    m = pb.RangeReply(error=error_to_pb(r.error), snapshot=r.snapshot, more=r.more,
                      compact_version=r.compact_version)
    add = m.items.add
    for item in r.items:
        add(key=item.key, value=item.value, version=item.version)
    return m


def range_reply_from_pb(m: pb.RangeReply) -> RangeReply:
    return RangeReply(error_from_pb(m.error), tuple(RangeItem(i.key, i.value, i.version) for i in m.items),
                      m.snapshot, m.more, m.compact_version)


# ---- replication ----


def entry_to_pb(e: Entry) -> pb.Entry:
    m = pb.Entry(seq=e.seq, request_id=e.request_id, key=e.key, kind=int(e.kind), value=e.value,
                 current_version=e.current_version)
    if e.kind == EntryKind.TXN:
        m.writes.extend(pb.TxnWrite(key=w.key, tombstone=w.tombstone, value=w.value) for w in e.writes)
        m.succeeded = e.succeeded
        m.results.extend(_results_to_pb(e.results))
    return m


_ENTRY_KINDS = {int(k): k for k in EntryKind}


def entry_from_pb(m: pb.Entry) -> Entry:
    kind = _ENTRY_KINDS.get(m.kind)  # not _enum: every entry of every batch comes through here
    if kind is None:
        raise WireError(f"unknown EntryKind value {m.kind}")
    if kind == EntryKind.TXN:
        return Entry(m.seq, m.request_id, m.key, kind, m.value, m.current_version,
                     tuple(TxnWrite(w.key, w.tombstone, w.value) for w in m.writes), m.succeeded,
                     _results_from_pb(m.results))
    return Entry(m.seq, m.request_id, m.key, kind, m.value, m.current_version)


def link_down_to_pb(body: Hello | Batch) -> pb.LinkDown:
    if isinstance(body, Hello):
        return pb.LinkDown(hello=pb.LinkHello(epoch=body.epoch, from_id=body.from_id, first_seq=body.first_seq))
    m = pb.LinkDown()
    batch = m.batch
    batch.SetInParent()  # an empty batch of epoch 0 is still a batch
    batch.epoch, batch.committed_seq = body.epoch, body.committed_seq
    add = batch.entries.add  # filled in place: about half the cost of building each Entry message apart
    for e in body.entries:
        if e.kind == EntryKind.TXN:
            batch.entries.append(entry_to_pb(e))
        elif e.current_version:
            add(seq=e.seq, request_id=e.request_id, key=e.key, kind=e.kind, value=e.value,
                current_version=e.current_version)
        else:
            add(seq=e.seq, request_id=e.request_id, key=e.key, kind=e.kind, value=e.value)
    return m


def link_down_from_pb(m: pb.LinkDown) -> Hello | Batch:
    which = m.WhichOneof("body")
    if which == "hello":
        return Hello(m.hello.epoch, m.hello.from_id, m.hello.first_seq)
    if which == "batch":
        return Batch(m.batch.epoch, tuple(entry_from_pb(e) for e in m.batch.entries), m.batch.committed_seq)
    raise WireError("LinkDown without a body")


def link_up_to_pb(body: Welcome | Ack) -> pb.LinkUp:
    if isinstance(body, Welcome):
        return pb.LinkUp(welcome=pb.LinkWelcome(error=error_to_pb(body.error), last_seq=body.last_seq,
                                                committed_seq=body.committed_seq,
                                                needs_transfer=body.needs_transfer, epoch=body.epoch))
    return pb.LinkUp(ack=pb.Ack(epoch=body.epoch, committed_seq=body.committed_seq))


def link_up_from_pb(m: pb.LinkUp) -> Welcome | Ack:
    which = m.WhichOneof("body")
    if which == "welcome":
        w = m.welcome
        return Welcome(error_from_pb(w.error), w.last_seq, w.committed_seq, w.needs_transfer, w.epoch)
    if which == "ack":
        return Ack(m.ack.epoch, m.ack.committed_seq)
    raise WireError("LinkUp without a body")


def version_query_to_pb(epoch: int, keys: tuple[bytes, ...] | list[bytes]) -> pb.VersionQueryRequest:
    return pb.VersionQueryRequest(epoch=epoch, keys=list(keys))


def version_reply_to_pb(r: VersionQueryReply) -> pb.VersionQueryReply:
    return pb.VersionQueryReply(error=error_to_pb(r.error), versions=list(r.versions), committed_seq=r.committed_seq)


def version_reply_from_pb(m: pb.VersionQueryReply) -> VersionQueryReply:
    return VersionQueryReply(error_from_pb(m.error), tuple(m.versions), m.committed_seq)


# ---- state transfer ----


def outcome_to_pb(o: RequestOutcome) -> pb.RequestOutcome:
    m = pb.RequestOutcome(request_id=o.request_id, seq=o.seq, kind=int(o.kind), current_version=o.current_version)
    if o.kind == EntryKind.TXN:  # the common kinds skip the transaction's fields: this is on the write path
        m.succeeded = o.succeeded
        m.results.extend(_results_to_pb(o.results))
    return m


def outcome_from_pb(m: pb.RequestOutcome) -> RequestOutcome:
    kind = _enum(EntryKind, m.kind)
    if kind == EntryKind.TXN:
        return RequestOutcome(m.request_id, m.seq, kind, m.current_version, m.succeeded, _results_from_pb(m.results))
    return RequestOutcome(m.request_id, m.seq, kind, m.current_version)


def transfer_chunk_to_pb(c: TransferChunk) -> pb.TransferChunk:
    return pb.TransferChunk(
        keys=[pb.KeyVersion(key=k.key, version=k.version, tombstone=k.tombstone, value=k.value) for k in c.keys],
        outcomes=[outcome_to_pb(o) for o in c.outcomes],
        through_seq=c.through_seq,
        last=c.last,
    )


def transfer_chunk_from_pb(m: pb.TransferChunk) -> TransferChunk:
    return TransferChunk(
        keys=tuple(KeyVersion(k.key, k.version, k.tombstone, k.value) for k in m.keys),
        outcomes=tuple(outcome_from_pb(o) for o in m.outcomes),
        through_seq=m.through_seq,
        last=m.last,
    )


# ---- administration ----


def status_to_pb(s: NodeStatus) -> pb.NodeStatus:
    return pb.NodeStatus(id=s.id, chain=s.chain, epoch=s.epoch, role=s.role, last_seq=s.last_seq,
                         committed_seq=s.committed_seq, reads=s.reads, writes=s.writes,
                         version_queries=s.version_queries, lease_valid=s.lease_valid, keys=s.keys,
                         storage_alarm=s.storage_alarm, disk_free_bytes=s.disk_free_bytes,
                         storage_alarms=list(s.storage_alarms))
