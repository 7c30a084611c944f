"""The Watch RPC of a real `ChainNode` (gRPC over RocksDB, in one process): a one-node chain, whose
writes commit at once, watched through its gRPC stub as a proxy would."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from keychain.node.messages import ChainConfig, Member, OpKind, WriteOp
from keychain.node.server import ChainNode
from keychain.node.storage import RocksVersionStore
from prometheus_client import generate_latest

from keychain.proto import chain_pb2, chain_pb2_grpc

CHAIN = "main"
CONFIG = ChainConfig(CHAIN, 1, (Member("n1"),))


async def started(path: Path, **kwargs: object) -> tuple[ChainNode, grpc.aio.Channel, chain_pb2_grpc.ChainNodeStub]:
    node = ChainNode("n1", RocksVersionStore(path, "n1", CHAIN), watch_heartbeat=0.05, **kwargs)  # type: ignore[arg-type]
    port = await node.start("127.0.0.1:0")
    assert node.configure(CONFIG, None).ok
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return node, channel, chain_pb2_grpc.ChainNodeStub(channel)


async def put(node: ChainNode, key: bytes, value: bytes) -> int:
    reply = await node.write(1, [WriteOp("", key, OpKind.PUT, value)])
    return reply.results[0].version


def events(batch: chain_pb2.WatchBatch) -> list[tuple[int, bytes, bytes]]:
    return [(e.version, e.key, e.value) for e in batch.events]


async def read(call: grpc.aio.UnaryStreamCall) -> chain_pb2.WatchBatch:
    return await asyncio.wait_for(call.read(), 10)


async def test_a_watch_streams_committed_changes_resumes_without_gap_and_heartbeats(tmp_path: Path) -> None:
    node, channel, stub = await started(tmp_path / "n1")
    try:
        for i in range(1, 4):
            await put(node, b"app/%d" % i, b"v%d" % i)
        await put(node, b"other", b"x")
        watch = stub.Watch(chain_pb2.WatchRequest(epoch=1, start=b"app/", end=b"app0", after_version=0))
        first = await read(watch)
        assert events(first) == [(1, b"app/1", b"v1"), (2, b"app/2", b"v2"), (3, b"app/3", b"v3")]
        assert first.committed_seq == 4  # the write to `other` was looked at, and skipped
        heartbeat = await read(watch)  # nothing new: an empty batch with the position
        assert (events(heartbeat), heartbeat.committed_seq, heartbeat.error.code) == ([], 4, chain_pb2.OK)
        await put(node, b"app/4", b"v4")
        while not (batch := await read(watch)).events:
            pass
        assert events(batch) == [(5, b"app/4", b"v4")]
        watch.cancel()

        resumed = stub.Watch(chain_pb2.WatchRequest(epoch=1, start=b"app/", end=b"app0", after_version=2))
        assert [v for v, _, _ in events(await read(resumed))] == [3, 5]  # after 2: no gap, no duplicate
        resumed.cancel()

        wrong = stub.Watch(chain_pb2.WatchRequest(epoch=9, after_version=0))
        refused = await read(wrong)
        assert refused.error.code == chain_pb2.WRONG_EPOCH
        assert await asyncio.wait_for(wrong.read(), 10) == grpc.aio.EOF  # an error batch ends the stream
        metrics = generate_latest(node.metrics.registry).decode()
        assert 'keychain_node_watch_history_changes{chain="main",node="n1"} 5.0' in metrics
        assert 'keychain_node_watch_compact_version{chain="main",node="n1"} 0.0' in metrics
    finally:
        await channel.close()
        await node.stop(grace=0)


async def test_a_restarted_node_answers_compacted_below_what_it_still_holds(tmp_path: Path) -> None:
    node, channel, stub = await started(tmp_path / "n1", watch_history_changes=2)
    try:
        for i in range(1, 5):
            await put(node, b"k%d" % i, b"v%d" % i)
        old = stub.Watch(chain_pb2.WatchRequest(epoch=1, after_version=1))
        refused = await read(old)
        assert (refused.error.code, refused.compact_version) == (chain_pb2.COMPACTED, 2)
        open_stream = stub.Watch(chain_pb2.WatchRequest(epoch=1, after_version=3))
        assert events(await read(open_stream)) == [(4, b"k4", b"v4")]
        await node.stop(grace=0)
        # A stopping node ends its streams (an UNAVAILABLE batch, or the call cut when there is no
        # grace left to send it): either way the client resumes elsewhere.
        try:
            assert (await read(open_stream)).error.code == chain_pb2.UNAVAILABLE
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
        await node.stop(grace=0)

    # Restarted on the same store: the history is rebuilt from the retained log (all 4 entries here),
    # within its bound of 2 changes.
    node, channel, stub = await started(tmp_path / "n1", watch_history_changes=2)
    try:
        again = stub.Watch(chain_pb2.WatchRequest(epoch=1, after_version=2))
        assert [v for v, _, _ in events(await read(again))] == [3, 4]
        again.cancel()
        older = stub.Watch(chain_pb2.WatchRequest(epoch=1, after_version=1))
        assert (await read(older)).error.code == chain_pb2.COMPACTED
    finally:
        await channel.close()
        await node.stop(grace=0)
