"""The chain node's gRPC shell in one process: a real `ChainNode` over real RocksDB, its neighbours
played by the test (a scripted gRPC peer, or direct core inputs), and a store whose fsync the test
can hold. Each test pins one duty the core's Ready contract leaves to the shell."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from keychain.node import wire
from keychain.node.core import CoreOptions
from keychain.node.messages import (
    Batch,
    ChainConfig,
    Code,
    Consistency,
    Entry,
    EntryKind,
    Hello,
    Member,
    MemberState,
    OpKind,
    WriteOp,
)
from keychain.node.server import SERVICE_NAME, ChainNode, max_message_bytes
from keychain.node.storage import RocksVersionStore

from keychain.proto import chain_pb2, chain_pb2_grpc

CHAIN = "main"


class HeldStore(RocksVersionStore):
    """A RocksDB store whose fsync waits while `hold` is set, and which records syncs and its close."""

    def __init__(self, path: Path, node_id: str) -> None:
        super().__init__(path, node_id, CHAIN)
        self.released = threading.Event()
        self.released.set()
        self.waiting = threading.Event()  # an fsync is being held
        self.events: list[str] = []

    def hold(self) -> None:
        self.waiting.clear()
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def sync(self) -> None:
        if not self.released.is_set():
            self.waiting.set()
            assert self.released.wait(10), "the test never released the fsync"
        super().sync()
        self.events.append("sync")

    def close(self) -> None:
        self.events.append("close")
        super().close()


class ScriptedPeer(chain_pb2_grpc.ChainNodeServicer):
    """A neighbour whose answers each test scripts; it counts the calls it gets."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.query_reply = chain_pb2.VersionQueryReply()
        self.transfer_script: list[list[chain_pb2.TransferChunk] | None] = []

    def _count(self, name: str) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name]

    async def Link(self, request_iterator, context):  # type: ignore[no-untyped-def,override]
        """Welcome a predecessor as an empty node and never acknowledge: its writes stay dirty."""
        self._count("Link")
        async for hello in request_iterator:  # welcomed as an empty node, in the Hello's epoch
            yield chain_pb2.LinkUp(welcome=chain_pb2.LinkWelcome(epoch=hello.hello.epoch))
            break
        async for _ in request_iterator:
            pass

    async def QueryVersion(self, request, context):  # type: ignore[no-untyped-def]
        self._count("QueryVersion")
        return self.query_reply

    async def Transfer(self, request, context):  # type: ignore[no-untyped-def,override]
        """Plays `transfer_script[n]` on the n-th call: its chunks, then a broken stream unless the
        last chunk says last."""
        chunks = self.transfer_script[self._count("Transfer") - 1] or []
        for chunk in chunks:
            yield chunk
        if not chunks or not chunks[-1].last:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the sender went away mid-transfer")


async def serve(peer: ScriptedPeer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    chain_pb2_grpc.add_ChainNodeServicer_to_server(peer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def eventually[T](what: str, check: Callable[[], T], timeout: float = 10.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return result


async def within[T](what: str, call: Awaitable[T], timeout: float = 10.0) -> T:
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        raise AssertionError(f"{what} did not finish within {timeout}s") from None


def config(epoch: int, *members: tuple[str, str, MemberState]) -> ChainConfig:
    return ChainConfig(CHAIN, epoch, tuple(Member(i, addr, state) for i, addr, state in members))


def put(seq: int, key: bytes) -> Entry:
    return Entry(seq, f"r{seq}", key, EntryKind.PUT, b"v%d" % seq)


ACTIVE, SYNCING = MemberState.ACTIVE, MemberState.SYNCING


async def test_caught_up_is_reported_for_the_epoch_it_was_reached_in(tmp_path: Path) -> None:
    # The syncing node becomes level while a Ready's fsync runs, and a new epoch lands during that
    # fsync. Level in epoch 1 says nothing about epoch 2: it must not tell the coordinator so.
    store = HeldStore(tmp_path / "n2", "n2")
    node = ChainNode("n2", store)
    await node.start("127.0.0.1:0")
    try:
        assert node.configure(config(1, ("n1", "127.0.0.1:1", ACTIVE), ("n2", "", SYNCING)), None).ok
        node.core.on_hello("n1", Hello(1, "n1", 1))
        node.core.on_batch("n1", Batch(1, (put(1, b"a"),), committed_seq=2))  # n1 is ahead: not level
        node.wake()
        await eventually("entry 1 to commit durably", lambda: store.state().committed_seq == 1)

        store.hold()
        node.core.on_batch("n1", Batch(1, (put(2, b"b"),), committed_seq=1))  # now level with n1
        node.wake()
        await eventually("the fsync of the level Ready", store.waiting.is_set)
        assert node.configure(config(2, ("n1", "127.0.0.1:1", ACTIVE), ("n2", "", SYNCING)), None).ok
        store.release()

        await eventually("the level Ready to be advanced", lambda: node.core._caught_up_epoch is not None)
        assert node.core._caught_up_epoch == 1
        assert node.core.epoch == 2 and not node.core.caught_up
    finally:
        store.release()
        await node.stop(grace=0)


async def test_a_read_gets_an_answer_when_the_tails_version_reply_is_malformed(tmp_path: Path) -> None:
    # The tail answers the version query with an error code this node does not know. The waiting
    # read must still get exactly one answer (UNAVAILABLE), not hang until the client gives up.
    tail = ScriptedPeer()
    tail.query_reply = chain_pb2.VersionQueryReply(error=chain_pb2.Error(code=99, message="from the future"))
    server, tail_address = await serve(tail)
    node = ChainNode("n1", RocksVersionStore(tmp_path / "n1", "n1", CHAIN))
    await node.start("127.0.0.1:0")
    try:
        assert node.configure(config(1, ("n1", "", ACTIVE), ("n2", tail_address, ACTIVE)), None).ok
        await eventually("the link to the tail", lambda: tail.calls.get("Link"))
        write = asyncio.create_task(node.write(1, [WriteOp("w1", b"k", OpKind.PUT, b"dirty")]))
        await eventually("the write to be sequenced", lambda: node.core.last_seq == 1)

        reply = await within("the read", node.read(1, b"k", Consistency.STRONG))
        assert reply.error.code == Code.UNAVAILABLE
        assert "version query" in reply.error.message
        assert tail.calls["QueryVersion"] == 1
        assert not write.done()  # the tail never acknowledged: the write is still dirty
        write.cancel()
    finally:
        await node.stop(grace=0)
        await server.stop(0)


async def test_a_state_transfer_broken_midway_is_asked_for_again_and_installed(tmp_path: Path) -> None:
    # n3 joins after the tail n2, which can no longer resend from seq 1 (Hello first=6): n3 asks for
    # a state transfer. The first Transfer stream breaks after one chunk; n3 backs off, asks again,
    # installs the complete state and welcomes n2 again at the transfer's point.
    pred = ScriptedPeer()
    keys = chain_pb2.TransferChunk(keys=[chain_pb2.KeyVersion(key=b"a", version=1, value=b"1"),
                                         chain_pb2.KeyVersion(key=b"b", version=2, value=b"2")])
    rest = chain_pb2.TransferChunk(keys=[chain_pb2.KeyVersion(key=b"c", version=5, value=b"5")],
                                   outcomes=[chain_pb2.RequestOutcome(request_id="w5", seq=5)],
                                   through_seq=5, last=True)
    pred.transfer_script = [[keys], [keys, rest]]
    server, pred_address = await serve(pred)
    node = ChainNode("n3", RocksVersionStore(tmp_path / "n3", "n3", CHAIN))
    port = await node.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    downstream: asyncio.Queue[chain_pb2.LinkDown | None] = asyncio.Queue()

    async def link_messages() -> AsyncIterator[chain_pb2.LinkDown]:
        while (msg := await downstream.get()) is not None:
            yield msg

    try:
        assert node.configure(config(1, ("n2", pred_address, ACTIVE), ("n3", "", SYNCING)), None).ok
        link = chain_pb2_grpc.ChainNodeStub(channel).Link(link_messages())
        await downstream.put(chain_pb2.LinkDown(hello=chain_pb2.LinkHello(epoch=1, from_id="n2", first_seq=6)))
        first = await within("the first welcome", link.read())
        assert first.welcome.needs_transfer and first.welcome.last_seq == 0

        second = await within("the welcome after the transfer", link.read())
        assert (second.welcome.error.code, second.welcome.last_seq, second.welcome.committed_seq) == (0, 5, 5)
        assert pred.calls["Transfer"] == 2
        assert node.metrics.transfer_failures._value.get() == 1
        assert [node.store.clean(k).value for k in (b"a", b"b", b"c")] == [b"1", b"2", b"5"]  # type: ignore[union-attr]
        assert node.store.outcome("w5") is not None
        await downstream.put(None)
    finally:
        await channel.close()
        await node.stop(grace=0)
        await server.stop(0)


async def test_stopping_waits_for_the_fsync_in_flight_before_closing_the_store(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "solo", "solo")
    node = ChainNode("solo", store)
    await node.start("127.0.0.1:0")
    assert node.configure(config(1, ("solo", "", ACTIVE)), None).ok
    await eventually("the configuration to be durable", lambda: "sync" in store.events)
    store.hold()
    write = asyncio.create_task(node.write(1, [WriteOp("w1", b"k", OpKind.PUT, b"v")]))
    await eventually("the write's fsync", store.waiting.is_set)

    stopping = asyncio.create_task(node.stop(grace=0))
    await asyncio.sleep(0.3)
    assert not stopping.done() and "close" not in store.events  # closing now would pull RocksDB from under it
    store.release()
    await within("stop", stopping)
    assert store.events[-3:] == ["sync", "sync", "close"]  # the held fsync, stop's own, then close
    write.cancel()


def test_message_limits_cover_the_largest_link_message_and_a_client_write() -> None:
    small = CoreOptions(max_value_bytes=1024, max_batch_bytes=4096)
    assert max_message_bytes(small) >= 4 << 20  # a proxy's batched write request always fits
    big = CoreOptions(max_value_bytes=16 << 20, max_batch_bytes=1 << 20)
    assert max_message_bytes(big) > (16 << 20) + big.max_key_bytes + big.max_request_id_bytes
    many = CoreOptions(max_batch_bytes=32 << 20, max_batch_entries=4096)
    assert max_message_bytes(many) > (32 << 20) + 4096 * 32



async def test_health_says_not_serving_while_a_state_transfer_is_being_installed(tmp_path: Path) -> None:
    # n2 was the whole chain; in epoch 2 n0 precedes it and, lacking the log n2 would need, opens
    # the link asking for a state transfer. Until it is installed n2 refuses reads, and its health
    # must say so (a load balancer following it would otherwise send reads it refuses).
    node = ChainNode("n2", RocksVersionStore(tmp_path / "n2", "n2", CHAIN))
    port = await node.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    health_stub = health_pb2_grpc.HealthStub(channel)

    async def status() -> int:
        reply = await health_stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        return int(reply.status)

    try:
        assert node.configure(config(1, ("n2", "", ACTIVE)), None).ok
        assert node.configure(config(2, ("n0", "127.0.0.1:1", ACTIVE), ("n2", "", ACTIVE)), None).ok
        await node._update_health()
        assert await status() == health_pb2.HealthCheckResponse.SERVING

        node.core.on_hello("n0", Hello(2, "n0", 5))  # n0 can resend only from seq 5: n2 needs its state
        node.wake()
        assert node.core.transfer_from == "n0"
        assert (await node.read(2, b"k", Consistency.STRONG)).error.code == Code.UNAVAILABLE
        await node._update_health()
        assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await channel.close()
        await node.stop(grace=0)


class FailingStore(RocksVersionStore):
    """A RocksDB store whose next fsync fails once `fail_next` is set (a failing disk)."""

    def __init__(self, path: Path, node_id: str) -> None:
        super().__init__(path, node_id, CHAIN)
        self.fail_next = False
        self.synced = 0

    def sync(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("the disk failed")
        super().sync()
        self.synced += 1


async def test_a_write_waiting_when_the_node_fails_gets_outcome_unknown_per_op(tmp_path: Path) -> None:
    # The fsync of a Ready holding a sequenced write fails and the node stops. The write may already
    # be on its way down the chain and commit there: its op's outcome is unknown, not "unavailable"
    # (which tells the client nothing was applied). An op refused at once keeps its own answer.
    store = FailingStore(tmp_path / "solo", "solo")
    node = ChainNode("solo", store)
    await node.start("127.0.0.1:0")
    assert node.configure(config(1, ("solo", "", ACTIVE)), None).ok
    await eventually("the configuration to be durable", lambda: store.synced)
    store.fail_next = True
    reply = await within("the write", node.write(1, [WriteOp("w1", b"k", OpKind.PUT, b"v"),
                                                     WriteOp("w2", b"", OpKind.PUT, b"v")]))
    await within("the node to stop", node.stopped.wait())
    assert node.failed is not None
    assert reply.error.ok
    assert [r.error.code for r in reply.results] == [Code.OUTCOME_UNKNOWN, Code.INVALID_ARGUMENT]
    assert "retry with the same request id" in reply.results[0].error.message


async def test_configure_rpc_is_refused_unless_the_node_runs_static(tmp_path: Path) -> None:
    # A node that follows a coordinator takes its epoch and lease from it alone: a stray Configure
    # (lease_ms=0 means a lease without end) must change nothing.
    request = chain_pb2.ConfigureRequest(config=wire.config_to_pb(config(7, ("n1", "", ACTIVE))), lease_ms=0)
    for static in (False, True):
        node = ChainNode("n1", RocksVersionStore(tmp_path / f"n1-{static}", "n1", CHAIN), static=static)
        port = await node.start("127.0.0.1:0")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            reply = await chain_pb2_grpc.ChainNodeStub(channel).Configure(request)
            if static:
                assert reply.error.code == chain_pb2.OK
                assert (node.core.epoch, node.status().role) == (7, "head")
            else:
                assert reply.error.code == chain_pb2.PRECONDITION_FAILED
                assert "--static" in reply.error.message
                assert (node.core.epoch, node.core.config) == (0, None)
        finally:
            await channel.close()
            await node.stop(grace=0)


class CountingStore(RocksVersionStore):
    """A RocksDB store that counts its writes (one per Ready applied)."""

    def __init__(self, path: Path, node_id: str) -> None:
        super().__init__(path, node_id, CHAIN)
        self.applies = 0

    def apply(self, records) -> None:  # type: ignore[no-untyped-def]
        self.applies += 1
        super().apply(records)


async def test_a_commit_point_alone_rides_with_the_next_write_and_is_written_soon_when_none_comes(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "solo", "solo")
    node = ChainNode("solo", store)
    await node.start("127.0.0.1:0")
    try:
        assert node.configure(config(1, ("solo", "", ACTIVE)), None).ok
        await eventually("the configuration to be written", lambda: store.state().config is not None)
        before = store.applies
        writes = 20
        for i in range(writes):
            reply = await within("a write", node.write(1, [WriteOp(f"w{i}", b"k%d" % i, OpKind.PUT, b"v")]))
            assert reply.results[0].error.ok
        # Each write makes a Ready of its entry (synced) and then one of its commit point alone (lazy):
        # the commit point goes with the next write's entry instead of a store write of its own.
        assert store.applies - before <= writes * 3 // 2, store.applies - before
        last = node.core.last_seq
        await eventually("the last commit point, written with no write to ride with",
                         lambda: store.state().committed_seq == last, timeout=2.0)
    finally:
        await node.stop(grace=0)
