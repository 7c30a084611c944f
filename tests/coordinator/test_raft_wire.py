"""Raft messages survive the trip through their protobuf form, and garbage is refused clearly."""

import pytest
from keychain.coordinator.log import Entry, EntryType, Snapshot
from keychain.coordinator.messages import Message, MessageType
from keychain.coordinator.raft_wire import WireError, batch_from_proto, batch_to_proto, message_from_proto

from keychain.proto import raft_pb2


def test_every_field_round_trips_through_a_serialized_batch():
    messages = [
        Message(
            MessageType.APPEND,
            to="n2",
            sender="n1",
            term=3,
            log_term=2,
            index=7,
            commit=6,
            entries=(Entry(8, 3, EntryType.NORMAL, b"cmd"), Entry(9, 3, EntryType.CONF_CHANGE, b"{}")),
        ),
        Message(MessageType.APPEND_RESP, to="n1", sender="n2", term=3, index=7, reject=True, reject_hint=5, log_term=2),
        Message(
            MessageType.SNAPSHOT,
            to="n3",
            sender="n1",
            term=3,
            snapshot=Snapshot(10, 3, ("n1", "n2", "n3"), ("n4",), b"registry"),
        ),
        Message(MessageType.HEARTBEAT, to="n3", sender="n1", term=3, commit=4, context=b"read-1"),
        Message(MessageType.PRE_VOTE, to="n2", sender="n3", term=4, index=9, log_term=3),
    ]
    wire = batch_to_proto(messages).SerializeToString()
    assert batch_from_proto(raft_pb2.MessageBatch.FromString(wire)) == messages


def test_a_message_of_unknown_type_or_without_addresses_is_refused():
    with pytest.raises(WireError, match="unknown message type 99"):
        message_from_proto(raft_pb2.Message(type=99, to="a", sender="b"))
    with pytest.raises(WireError, match="needs both"):
        message_from_proto(raft_pb2.Message(type=raft_pb2.MSG_APPEND, to="a"))
