"""Read batches travel on one ReadStream per node: answered batches share the stream, and a stream
that breaks or leaves a batch unanswered past its timeout fails that batch as a failed call would
and is replaced by the next batch."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from keychain.proxy.read_streams import ReadStreams, StreamCallError

from keychain.proto import chain_pb2, chain_pb2_grpc


class ScriptedNode(chain_pb2_grpc.ChainNodeServicer):
    """Answers each batch by its first key: b"abort" ends the stream UNAVAILABLE, b"hang" is never
    answered; any other key is found, with its call number echoed."""

    def __init__(self) -> None:
        self.streams = 0

    async def ReadStream(self, request_iterator, context):  # type: ignore[no-untyped-def,override]
        self.streams += 1
        async for request in request_iterator:
            key = request.ops[0].key
            if key == b"abort":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "node going away")
            if key == b"hang":
                await asyncio.sleep(3600)
            yield chain_pb2.ReadBatchReply(call=request.call, results=[chain_pb2.ReadReply(value=key, version=1)])


@pytest.fixture
async def node():
    servicer = ScriptedNode()
    server = grpc.aio.server()
    chain_pb2_grpc.add_ChainNodeServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    streams = ReadStreams(lambda address: chain_pb2_grpc.ChainNodeStub(channel))
    yield servicer, streams
    streams.close()
    await channel.close()
    await server.stop(0)


def batch(key: bytes) -> chain_pb2.ReadBatchRequest:
    return chain_pb2.ReadBatchRequest(epoch=1, ops=[chain_pb2.ReadOp(key=key)])


async def test_batches_share_one_stream_and_each_gets_its_own_reply(node):
    servicer, streams = node
    replies = await asyncio.gather(*(streams.read_batch("n1", batch(k), 5) for k in (b"a", b"b", b"c")))
    assert [r.results[0].value for r in replies] == [b"a", b"b", b"c"]
    assert servicer.streams == 1


async def test_a_broken_stream_fails_its_batch_like_a_failed_call_and_the_next_batch_opens_another(node):
    servicer, streams = node
    assert (await streams.read_batch("n1", batch(b"a"), 5)).results[0].value == b"a"
    with pytest.raises(StreamCallError) as failed:
        await streams.read_batch("n1", batch(b"abort"), 5)
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    assert (await streams.read_batch("n1", batch(b"b"), 5)).results[0].value == b"b"
    assert servicer.streams == 2


async def test_a_batch_left_unanswered_times_out_and_the_stream_is_not_used_again(node):
    servicer, streams = node
    with pytest.raises(StreamCallError) as failed:
        await streams.read_batch("n1", batch(b"hang"), 0.2)
    assert failed.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert (await streams.read_batch("n1", batch(b"b"), 5)).results[0].value == b"b"
    assert servicer.streams == 2
