"""The Raft peer transport over real gRPC on 127.0.0.1: delivery in order, and what it tells the core
when a peer is down (unreachable; a snapshot that could not be sent), and recovery when it is back."""

from __future__ import annotations

import asyncio

import grpc
from coordinator_shell_harness import free_ports
from keychain.coordinator.log import Snapshot
from keychain.coordinator.messages import Message, MessageType
from keychain.coordinator.transport import RECONNECT_MAX, RaftTransport


class Recorder:
    def __init__(self) -> None:
        self.stepped: list[Message] = []
        self.unreachable: list[str] = []
        self.snapshots: list[tuple[str, bool]] = []

    def step(self, message: Message) -> None:
        self.stepped.append(message)

    def report_unreachable(self, peer: str) -> None:
        self.unreachable.append(peer)

    def report_snapshot(self, peer: str, ok: bool) -> None:
        self.snapshots.append((peer, ok))


async def serve(transport: RaftTransport, address: str) -> grpc.aio.Server:
    server = grpc.aio.server()
    transport.add_to_server(server)
    server.add_insecure_port(address)
    await server.start()
    return server


async def eventually(check, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def heartbeat(i: int) -> Message:
    return Message(MessageType.HEARTBEAT, to="b", sender="a", term=1, commit=i)


async def test_messages_arrive_in_order_and_a_down_peer_is_reported_until_it_is_back():
    pa, pb = free_ports(2)
    peers = {"a": f"127.0.0.1:{pa}", "b": f"127.0.0.1:{pb}"}
    sender, receiver = RaftTransport("a", peers), RaftTransport("b", peers)
    at_a, at_b = Recorder(), Recorder()
    sender.attach(at_a)
    receiver.attach(at_b)

    # b is down: the messages are dropped, the core hears that b is unreachable, and a snapshot
    # that was on its way is reported as not sent.
    snap = Snapshot(index=5, term=1, voters=("a", "b"), data=b"registry")
    sender.send(Message(MessageType.SNAPSHOT, to="b", sender="a", term=1, snapshot=snap))
    sender.send(heartbeat(1))
    await eventually(lambda: "b" in at_a.unreachable and ("b", False) in at_a.snapshots)

    server = await serve(receiver, peers["b"])
    try:
        await asyncio.sleep(RECONNECT_MAX)
        for i in range(2, 50):
            sender.send(heartbeat(i))
        sender.send(Message(MessageType.SNAPSHOT, to="b", sender="a", term=1, snapshot=snap))
        await eventually(lambda: len(at_b.stepped) >= 49)
        commits = [m.commit for m in at_b.stepped if m.type is MessageType.HEARTBEAT]
        assert commits == sorted(commits) and commits[-1] == 49
        assert at_b.stepped[-1].snapshot == snap
        await eventually(lambda: ("b", True) in at_a.snapshots)
    finally:
        await sender.close()
        await server.stop(None)


async def test_a_batch_for_another_member_is_refused_and_not_stepped():
    (pb,) = free_ports(1)
    receiver = RaftTransport("b", {"b": f"127.0.0.1:{pb}"})
    at_b = Recorder()
    receiver.attach(at_b)
    server = await serve(receiver, f"127.0.0.1:{pb}")
    misdirected = RaftTransport("a", {"c": f"127.0.0.1:{pb}"})  # thinks c lives at b's address
    at_a = Recorder()
    misdirected.attach(at_a)
    try:
        misdirected.send(Message(MessageType.HEARTBEAT, to="c", sender="a", term=1))
        await eventually(lambda: "c" in at_a.unreachable)
        assert at_b.stepped == []
    finally:
        await misdirected.close()
        await server.stop(None)


async def test_a_snapshot_for_a_peer_with_no_known_address_is_reported_as_not_sent():
    transport = RaftTransport("a", {})  # c is not (yet) in the address book
    at_a = Recorder()
    transport.attach(at_a)
    snap = Snapshot(index=5, term=1, voters=("a", "c"), data=b"registry")
    try:
        transport.send(Message(MessageType.SNAPSHOT, to="c", sender="a", term=1, snapshot=snap))
        transport.send(Message(MessageType.HEARTBEAT, to="c", sender="a", term=1))
        # Dropped at once: the leader may send c another snapshot instead of waiting forever.
        assert at_a.snapshots == [("c", False)]
    finally:
        await transport.close()


class CountingTransport(RaftTransport):
    """A receiver that counts the calls its batches arrived on."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.calls = 0

    async def StepStream(self, request_iterator, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        return await super().StepStream(request_iterator, context)

    async def Step(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        return await super().Step(request, context)


async def test_batches_to_a_peer_travel_on_one_stream_and_a_new_one_follows_the_old_in_order(monkeypatch):
    pa, pb = free_ports(2)
    peers = {"a": f"127.0.0.1:{pa}", "b": f"127.0.0.1:{pb}"}
    sender, receiver = RaftTransport("a", peers), CountingTransport("b", peers)
    at_b = Recorder()
    sender.attach(Recorder())
    receiver.attach(at_b)
    server = await serve(receiver, peers["b"])
    try:
        for i in range(1, 21):  # twenty heartbeats, each its own batch: an idle leader's
            sender.send(heartbeat(i))
            await eventually(lambda i=i: len(at_b.stepped) == i)
        assert receiver.calls == 1
        # A stream that has served its time is ended, and received whole, before the next one opens.
        monkeypatch.setattr("keychain.coordinator.transport.STREAM_MAX_AGE", 0.0)
        for i in range(21, 31):
            sender.send(heartbeat(i))
            await eventually(lambda i=i: len(at_b.stepped) == i)
        for i in range(31, 41):  # queued at once: whatever the batches, the order holds
            sender.send(heartbeat(i))
        await eventually(lambda: len(at_b.stepped) == 40)
        assert [m.commit for m in at_b.stepped] == list(range(1, 41)) and receiver.calls >= 11
    finally:
        await sender.close()
        await server.stop(None)
