"""ReadBatch on a real `ChainNode` over real RocksDB: many reads in one call, each answered exactly as
a Read of its key, the dirty ones resolved with one version query to the tail, refusals of the
whole request, replies kept under the gRPC message limit, and batches on a ReadStream answered each
as soon as it is served.

The tail is played by the test: it welcomes the head's link, never acknowledges on its own (the test
commits with a direct Ack to the core), and answers version queries from a table it records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from keychain.node import wire
from keychain.node.messages import (
    Ack,
    ChainConfig,
    Code,
    Consistency,
    Error,
    Member,
    MemberState,
    OpKind,
    ReadReply,
    WriteOp,
)
from keychain.node.server import ChainNode, max_message_bytes
from keychain.node.storage import RocksVersionStore

from keychain.proto import chain_pb2, chain_pb2_grpc

CHAIN = "main"
STRONG, EVENTUAL = chain_pb2.STRONG, chain_pb2.EVENTUAL


class TableTail(chain_pb2_grpc.ChainNodeServicer):
    """A tail that knows the committed version of each key from `committed` (absent: 0)."""

    def __init__(self) -> None:
        self.committed: dict[bytes, int] = {}
        self.queries: list[list[bytes]] = []
        self.refuse: chain_pb2.Error | None = None
        self.hold: asyncio.Event | None = None  # version queries wait for it while set

    async def Link(self, request_iterator, context):  # type: ignore[no-untyped-def,override]
        async for hello in request_iterator:  # welcomed as an empty node, in the Hello's epoch
            yield chain_pb2.LinkUp(welcome=chain_pb2.LinkWelcome(epoch=hello.hello.epoch))
            break
        async for _ in request_iterator:
            pass

    async def QueryVersion(self, request, context):  # type: ignore[no-untyped-def]
        self.queries.append(list(request.keys))
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse is not None:
            return chain_pb2.VersionQueryReply(error=self.refuse)
        return chain_pb2.VersionQueryReply(versions=[self.committed.get(k, 0) for k in request.keys])


async def eventually[T](what: str, check: Callable[[], T], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return result


def members(*ids_and_addresses: tuple[str, str]) -> ChainConfig:
    return ChainConfig(CHAIN, 1, tuple(Member(i, a, MemberState.ACTIVE) for i, a in ids_and_addresses))


def batch(*ops: tuple[bytes, int], epoch: int = 1) -> chain_pb2.ReadBatchRequest:
    return chain_pb2.ReadBatchRequest(epoch=epoch, ops=[chain_pb2.ReadOp(key=k, consistency=c) for k, c in ops])


def answer(r: chain_pb2.ReadReply) -> tuple[str, bytes, int]:
    return chain_pb2.Code.Name(r.error.code), r.value, r.version


class Head:
    """Node n1, head of n1 -> n2 (the scripted tail), reached over gRPC by `stub`."""

    def __init__(self, node: ChainNode, stub: chain_pb2_grpc.ChainNodeStub, tail: TableTail) -> None:
        self.node, self.stub, self.tail = node, stub, tail

    def write(self, rid: str, key: bytes, value: bytes = b"", delete: bool = False) -> asyncio.Task[object]:
        kind = OpKind.DELETE if delete else OpKind.PUT
        return asyncio.ensure_future(self.node.write(1, [WriteOp(rid, key, kind, value)]))

    async def commit_through(self, seq: int) -> None:
        """What an ack from the tail does; the test decides when."""
        await eventually("the link to stream", lambda: self.node.core.link.value == "streaming")
        self.node.core.on_ack("n2", Ack(1, seq))
        self.node.wake()
        await eventually(f"commit through {seq}", lambda: self.node.core.committed_seq >= seq)


@pytest.fixture
async def head(tmp_path: Path) -> AsyncIterator[Head]:
    tail = TableTail()
    server = grpc.aio.server()
    chain_pb2_grpc.add_ChainNodeServicer_to_server(tail, server)
    tail_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    node = ChainNode("n1", RocksVersionStore(tmp_path / "n1", "n1", CHAIN))
    port = await node.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        assert node.configure(members(("n1", ""), ("n2", f"127.0.0.1:{tail_port}")), None).ok
        yield Head(node, chain_pb2_grpc.ChainNodeStub(channel), tail)
    finally:
        await channel.close()
        await node.stop(grace=0)
        await server.stop(0)


async def test_each_key_of_a_batch_is_answered_as_its_own_read_and_dirty_keys_share_one_version_query(
    head: Head,
) -> None:
    # a: clean v1, then a dirty v5 the tail has not committed. b: put then deleted (tombstone v3,
    # clean). c: only a dirty v4 the tail has never seen committed.
    writes = [head.write("w1", b"a", b"a1"), head.write("w2", b"b", b"b1"), head.write("w3", b"b", delete=True)]
    await eventually("three writes sequenced", lambda: head.node.core.last_seq == 3)
    await head.commit_through(3)
    await asyncio.gather(*writes)
    dirty = [head.write("w4", b"c", b"c4"), head.write("w5", b"a", b"a5")]
    await eventually("the dirty writes sequenced", lambda: head.node.core.last_seq == 5)
    head.tail.committed = {b"a": 1, b"b": 3}

    ops = [(b"a", STRONG), (b"a", EVENTUAL), (b"b", STRONG), (b"c", STRONG), (b"c", EVENTUAL),
           (b"never", STRONG), (b"", STRONG), (b"c", STRONG)]
    reply = await head.stub.ReadBatch(batch(*ops), timeout=10)

    assert reply.error.code == chain_pb2.OK
    assert [answer(r) for r in reply.results] == [
        ("OK", b"a1", 1),  # dirty: the tail names v1, the head returns its own copy of v1
        ("OK", b"a1", 1),  # eventual: the latest clean version, no question asked
        ("NOT_FOUND", b"", 3),  # the tombstone's version
        ("NOT_FOUND", b"", 0),  # dirty, never committed: absent
        ("NOT_FOUND", b"", 0),
        ("NOT_FOUND", b"", 0),
        ("INVALID_ARGUMENT", b"", 0),
        ("NOT_FOUND", b"", 0),
    ]
    assert head.tail.queries == [[b"a", b"c"]], "one version query for every dirty read of the batch"

    singles = [await head.stub.Read(chain_pb2.ReadRequest(epoch=1, key=k, consistency=c), timeout=10) for k, c in ops]
    assert [answer(r) for r in singles] == [answer(r) for r in reply.results]
    assert len(head.tail.queries) == 1 + 3, "one read at a time: one query per dirty strong read"
    for w in dirty:
        w.cancel()


async def clean_and_dirty(head: Head) -> asyncio.Task[object]:
    """Key b"clean" committed at v1, key b"dirty" sequenced at v2 and not committed; returns the
    dirty write, still waiting for its commit."""
    clean = head.write("w1", b"clean", b"v")
    await eventually("the write sequenced", lambda: head.node.core.last_seq == 1)
    await head.commit_through(1)
    await clean
    dirty = head.write("w2", b"dirty", b"v2")
    await eventually("the dirty write sequenced", lambda: head.node.core.last_seq == 2)
    return dirty


async def test_a_failed_version_query_fails_only_the_dirty_keys_of_the_batch(head: Head) -> None:
    dirty = await clean_and_dirty(head)
    head.tail.refuse = chain_pb2.Error(code=chain_pb2.LEASE_EXPIRED, message="tail lease lapsed", epoch=1)

    reply = await head.stub.ReadBatch(batch((b"dirty", STRONG), (b"clean", STRONG), (b"dirty", EVENTUAL)), timeout=10)

    assert reply.error.code == chain_pb2.OK
    codes = [answer(r)[0] for r in reply.results]
    assert codes == ["UNAVAILABLE", "OK", "NOT_FOUND"]
    assert "version query" in reply.results[0].error.message
    dirty.cancel()


async def test_on_a_read_stream_a_batch_waiting_on_the_tail_holds_up_no_later_batch(head: Head) -> None:
    dirty = await clean_and_dirty(head)
    head.tail.hold = asyncio.Event()

    stream = head.stub.ReadStream()
    await stream.write(chain_pb2.ReadBatchRequest(epoch=1, call=7, ops=[chain_pb2.ReadOp(key=b"dirty", consistency=STRONG)]))
    await stream.write(chain_pb2.ReadBatchRequest(epoch=1, call=8, ops=[chain_pb2.ReadOp(key=b"clean", consistency=STRONG)]))
    first = await asyncio.wait_for(stream.read(), 10)
    assert (first.call, [answer(r) for r in first.results]) == (8, [("OK", b"v", 1)]), "the clean batch first"

    head.tail.hold.set()  # the tail answers: the dirty key's committed version is 0
    second = await asyncio.wait_for(stream.read(), 10)
    assert (second.call, [answer(r) for r in second.results]) == (7, [("NOT_FOUND", b"", 0)])

    await stream.write(chain_pb2.ReadBatchRequest(epoch=9, call=9, ops=[chain_pb2.ReadOp(key=b"clean")]))
    refused = await asyncio.wait_for(stream.read(), 10)
    assert (refused.call, refused.error.code) == (9, chain_pb2.WRONG_EPOCH), "a refusal names its call too"
    await stream.done_writing()
    assert await stream.read() is grpc.aio.EOF, "the node ends the stream once the proxy does"
    dirty.cancel()


async def test_epoch_lease_and_membership_refuse_the_whole_batch(tmp_path: Path) -> None:
    node = ChainNode("solo", RocksVersionStore(tmp_path / "solo", "solo", CHAIN))
    port = await node.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = chain_pb2_grpc.ChainNodeStub(channel)
    try:
        unconfigured = await stub.ReadBatch(batch((b"k", STRONG)), timeout=5)
        assert (unconfigured.error.code, list(unconfigured.results)) == (chain_pb2.WRONG_EPOCH, [])

        assert node.configure(members(("solo", "")), lease_until=node.clock() - 1).ok
        lapsed = await stub.ReadBatch(batch((b"k", STRONG), (b"j", EVENTUAL)), timeout=5)
        assert (lapsed.error.code, list(lapsed.results)) == (chain_pb2.LEASE_EXPIRED, [])

        node.renew_lease(node.clock() + 60)
        stale = await stub.ReadBatch(batch((b"k", STRONG), epoch=7), timeout=5)
        assert (stale.error.code, stale.error.epoch, list(stale.results)) == (chain_pb2.WRONG_EPOCH, 1, [])

        served = await stub.ReadBatch(batch((b"k", STRONG), (b"j", EVENTUAL)), timeout=5)
        assert served.error.code == chain_pb2.OK
        assert [answer(r) for r in served.results] == [("NOT_FOUND", b"", 0)] * 2
        assert node.status().reads == 2

        empty = await stub.ReadBatch(batch(), timeout=5)
        assert (empty.error.code, list(empty.results)) == (chain_pb2.OK, [])

        unknown = chain_pb2.ReadBatchRequest(epoch=1, ops=[chain_pb2.ReadOp(key=b"k", consistency=9)])
        refused = await stub.ReadBatch(unknown, timeout=5)
        assert refused.error.code == chain_pb2.INVALID_ARGUMENT and "Consistency" in refused.error.message
    finally:
        await channel.close()
        await node.stop(grace=0)


async def test_a_batch_of_large_values_stops_short_of_the_message_limit_and_the_rest_can_be_asked_again(
    tmp_path: Path,
) -> None:
    node = ChainNode("solo", RocksVersionStore(tmp_path / "solo", "solo", CHAIN))
    port = await node.start("127.0.0.1:0")
    limit = max_message_bytes(node.core.options)
    big = b"x" * node.core.options.max_value_bytes  # 1 MiB: a handful exceed the ~4 MiB message limit
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = chain_pb2_grpc.ChainNodeStub(channel)
    try:
        assert node.configure(members(("solo", "")), None).ok
        for i in range(6):
            assert (await node.write(1, [WriteOp(f"w{i}", b"big-%d" % i, OpKind.PUT, big)])).error.ok
        keys = [b"big-%d" % i for i in range(6)]

        first = await stub.ReadBatch(batch(*((k, STRONG) for k in keys)), timeout=10)
        assert first.error.code == chain_pb2.OK
        assert 1 <= len(first.results) < len(keys), "the reply stops short instead of failing the call"
        assert first.ByteSize() <= limit
        assert all(r.value == big for r in first.results)

        rest = await stub.ReadBatch(batch(*((k, STRONG) for k in keys[len(first.results):])), timeout=10)
        assert [r.value == big for r in rest.results] == [True] * len(rest.results)
        assert len(first.results) + len(rest.results) == len(keys)
    finally:
        await channel.close()
        await node.stop(grace=0)


def test_read_batches_cross_the_wire_intact() -> None:
    request = wire.read_batch_request_to_pb(4, [(b"a", Consistency.STRONG), (b"b", Consistency.EVENTUAL)])
    assert wire.read_batch_request_from_pb(chain_pb2.ReadBatchRequest.FromString(request.SerializeToString())) == (
        4, [(b"a", Consistency.STRONG), (b"b", Consistency.EVENTUAL)])
    replies = [ReadReply(value=b"v", version=3), ReadReply(Error(Code.NOT_FOUND, "no such key", 4), version=2)]
    pb = chain_pb2.ReadBatchReply.FromString(wire.read_batch_reply_to_pb(Error(), replies).SerializeToString())
    assert wire.read_batch_reply_from_pb(pb) == (Error(), replies)
