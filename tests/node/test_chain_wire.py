"""The core's messages survive the trip through chain.proto unchanged, and bad input is refused."""

from __future__ import annotations

import pytest
from keychain.node import wire
from keychain.node.messages import (
    Ack,
    Batch,
    ChainConfig,
    Code,
    Consistency,
    Entry,
    EntryKind,
    Error,
    Hello,
    KeyVersion,
    Member,
    MemberState,
    OpKind,
    ReadReply,
    RequestOutcome,
    TransferChunk,
    VersionQueryReply,
    Welcome,
    WriteOp,
    WriteReply,
    WriteResult,
)

from keychain.proto import chain_pb2 as pb

ENTRIES = (
    Entry(7, "r1", b"k", EntryKind.PUT, b"v"),
    Entry(8, "", b"k", EntryKind.DELETE),
    Entry(9, "r3", b"k", EntryKind.NOOP, b"", 7),
)


def _roundtrip(to_pb, from_pb, value):
    m = to_pb(value)
    again = type(m)()
    again.ParseFromString(m.SerializeToString())
    return from_pb(again)


@pytest.mark.parametrize("body", [Hello(3, "n1", 42), Batch(3, ENTRIES, 6), Batch(3, (), 0)])
def test_link_down_messages_roundtrip(body):
    assert _roundtrip(wire.link_down_to_pb, wire.link_down_from_pb, body) == body


@pytest.mark.parametrize("body", [
    Welcome(Error(), 9, 7, False, 4),
    Welcome(Error(), 0, 0, True, 1),
    Welcome(Error(Code.WRONG_EPOCH, "epoch 2 is not ours", 3), epoch=2),
    Ack(3, 9),
])
def test_link_up_messages_roundtrip(body):
    assert _roundtrip(wire.link_up_to_pb, wire.link_up_from_pb, body) == body


def test_compare_and_set_on_version_zero_is_not_an_unconditional_write():
    cas_absent = WriteOp("r", b"k", OpKind.PUT, b"v", if_version=0)
    plain = WriteOp("r", b"k", OpKind.PUT, b"v")
    epoch, ops = wire.write_request_from_pb(wire.write_request_to_pb(4, [cas_absent, plain]))
    assert (epoch, ops) == (4, [cas_absent, plain])


def test_replies_roundtrip():
    reply = WriteReply(results=(WriteResult(version=5),
                                WriteResult(Error(Code.PRECONDITION_FAILED, "precondition failed"), 0, 4)))
    assert _roundtrip(wire.write_reply_to_pb, wire.write_reply_from_pb, reply) == reply
    read = ReadReply(Error(Code.NOT_FOUND, "no such key", 2), b"", 8)
    assert _roundtrip(wire.read_reply_to_pb, wire.read_reply_from_pb, read) == read
    versions = VersionQueryReply(versions=(3, 0, 9))
    assert _roundtrip(wire.version_reply_to_pb, wire.version_reply_from_pb, versions) == versions


def test_transfer_chunks_and_configs_roundtrip():
    chunk = TransferChunk((KeyVersion(b"a", 3), KeyVersion(b"b", 4, True)),
                          (RequestOutcome("r1", 3, EntryKind.PUT), RequestOutcome("r2", 5, EntryKind.NOOP, 3)), 5, True)
    assert _roundtrip(wire.transfer_chunk_to_pb, wire.transfer_chunk_from_pb, chunk) == chunk
    config = ChainConfig("c", 2, (Member("n1", "h:1"), Member("n2", "h:2", MemberState.SYNCING)))
    assert _roundtrip(wire.config_to_pb, wire.config_from_pb, config) == config


def test_read_requests_decode_with_their_consistency():
    m = pb.ReadRequest(epoch=2, key=b"k", consistency=pb.EVENTUAL)
    assert wire.read_request_from_pb(m) == (2, b"k", Consistency.EVENTUAL)


def test_bad_input_is_refused_clearly():
    with pytest.raises(wire.WireError, match="LinkDown without a body"):
        wire.link_down_from_pb(pb.LinkDown())
    with pytest.raises(wire.WireError, match="LinkUp without a body"):
        wire.link_up_from_pb(pb.LinkUp())
    with pytest.raises(wire.WireError, match="unknown OpKind value 7"):
        wire.write_op_from_pb(pb.WriteOp(key=b"k", kind=7))
    bad = pb.ChainConfig(chain="c", epoch=1, members=[pb.Member(id="n1", state=pb.SYNCING),
                                                       pb.Member(id="n2", state=pb.ACTIVE)])
    with pytest.raises(ValueError, match="active member n2 after a syncing one"):
        wire.config_from_pb(bad)
