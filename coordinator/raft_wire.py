"""Conversion between the core's Raft values and their protobuf form (keychain/proto/raft.proto)."""

from __future__ import annotations

from collections.abc import Iterable

from keychain.coordinator.log import Entry, EntryType, Snapshot
from keychain.coordinator.messages import Message, MessageType

from keychain.proto import raft_pb2


class WireError(ValueError):
    """A received protobuf message is not a valid Raft message."""


def entry_to_proto(e: Entry) -> raft_pb2.Entry:
    return raft_pb2.Entry(index=e.index, term=e.term, type=int(e.type), data=e.data)


def entry_from_proto(p: raft_pb2.Entry) -> Entry:
    try:
        kind = EntryType(p.type)
    except ValueError as exc:
        raise WireError(f"unknown entry type {p.type}") from exc
    return Entry(index=p.index, term=p.term, type=kind, data=p.data)


def snapshot_to_proto(s: Snapshot) -> raft_pb2.Snapshot:
    return raft_pb2.Snapshot(
        index=s.index, term=s.term, voters=list(s.voters), learners=list(s.learners), data=s.data
    )


def snapshot_from_proto(p: raft_pb2.Snapshot) -> Snapshot:
    return Snapshot(index=p.index, term=p.term, voters=tuple(p.voters), learners=tuple(p.learners), data=p.data)


def message_to_proto(m: Message) -> raft_pb2.Message:
    p = raft_pb2.Message(
        type=int(m.type),
        to=m.to,
        sender=m.sender,
        term=m.term,
        log_term=m.log_term,
        index=m.index,
        entries=[entry_to_proto(e) for e in m.entries],
        commit=m.commit,
        reject=m.reject,
        reject_hint=m.reject_hint,
        context=m.context,
    )
    if m.snapshot is not None:
        p.snapshot.CopyFrom(snapshot_to_proto(m.snapshot))
    return p


def message_from_proto(p: raft_pb2.Message) -> Message:
    try:
        kind = MessageType(p.type)
    except ValueError as exc:
        raise WireError(f"unknown message type {p.type}") from exc
    if not p.to or not p.sender:
        raise WireError("a Raft message needs both `to` and `sender`")
    return Message(
        type=kind,
        to=p.to,
        sender=p.sender,
        term=p.term,
        log_term=p.log_term,
        index=p.index,
        entries=tuple(entry_from_proto(e) for e in p.entries),
        commit=p.commit,
        reject=p.reject,
        reject_hint=p.reject_hint,
        snapshot=snapshot_from_proto(p.snapshot) if p.HasField("snapshot") else None,
        context=p.context,
    )


def batch_to_proto(messages: Iterable[Message]) -> raft_pb2.MessageBatch:
    return raft_pb2.MessageBatch(messages=[message_to_proto(m) for m in messages])


def batch_from_proto(p: raft_pb2.MessageBatch) -> list[Message]:
    return [message_from_proto(m) for m in p.messages]
