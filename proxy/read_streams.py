"""Read batches over one long-lived ReadStream per node, instead of a unary ReadBatch call each.

A proxy under read load sends hundreds of read batches a second to every member. In grpc.aio a unary
call costs both sides several times what a message on an open stream costs (call set-up, metadata,
status and the poller's events for each), and that cost was a large part of a proxy's and a node's
CPU per read. So each node gets one bidirectional stream: every request carries a `call` number and
the node's reply echoes it (replies may come in any order).

Failure keeps the unary call's meaning for the caller: `read_batch` raises `StreamCallError` with a
gRPC status code, as a failed call would. A stream that breaks fails every batch waiting on it, and
the next batch opens a new one. A batch that gets no reply before its timeout cancels the stream
(a node that answers nothing on it is not trusted with the next batch either).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import grpc

from keychain.proto import chain_pb2, chain_pb2_grpc

log = logging.getLogger("keychain.proxy.read_streams")


class StreamCallError(Exception):
    """A read batch that got no reply: the stream broke, or the timeout passed. Shaped like
    grpc.aio.AioRpcError (`code()`, `details()`) so that callers judge both alike."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _Stream:
    """One open ReadStream: the batches sent on it wait for their replies by call number."""

    def __init__(self, call: grpc.aio.StreamStreamCall, on_end: Callable[[_Stream], None]) -> None:
        self.call = call
        self.waiting: dict[int, asyncio.Future[chain_pb2.ReadBatchReply]] = {}
        self.broken: StreamCallError | None = None
        self.writing = asyncio.Lock()  # one message at a time on a stream
        self._on_end = on_end
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        failure = StreamCallError(grpc.StatusCode.UNAVAILABLE, "the node ended the read stream")
        try:
            async for reply in self.call:
                waiter = self.waiting.pop(reply.call, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        except grpc.aio.AioRpcError as e:
            failure = StreamCallError(e.code(), e.details() or "")
        except asyncio.CancelledError:
            failure = StreamCallError(grpc.StatusCode.CANCELLED, "the read stream was closed")
        finally:
            self._fail(failure)

    def _fail(self, failure: StreamCallError) -> None:
        if self.broken is None:
            self.broken = failure
            self._on_end(self)
        waiting, self.waiting = self.waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(failure)

    def close(self, failure: StreamCallError) -> None:
        """End the stream: its waiting batches fail with `failure`."""
        self._fail(failure)
        self.call.cancel()
        self._reader.cancel()


class ReadStreams:
    """The proxy's ReadStreams, one per node address, opened on first use."""

    def __init__(self, stub: Callable[[str], chain_pb2_grpc.ChainNodeStub]) -> None:
        self._stub = stub
        self._streams: dict[str, _Stream] = {}
        self._calls = itertools.count(1)

    def _open(self, address: str) -> _Stream:
        stream = self._streams.get(address)
        if stream is None or stream.broken is not None:
            def forget(ended: _Stream) -> None:
                if self._streams.get(address) is ended:
                    del self._streams[address]

            stream = self._streams[address] = _Stream(self._stub(address).ReadStream(), forget)
        return stream

    async def read_batch(self, address: str, request: chain_pb2.ReadBatchRequest,
                         timeout: float) -> chain_pb2.ReadBatchReply:
        """Send `request` to `address` and wait at most `timeout` seconds for its reply; raises
        `StreamCallError` if none comes."""
        stream = self._open(address)
        request.call = number = next(self._calls)
        waiter: asyncio.Future[chain_pb2.ReadBatchReply] = asyncio.get_running_loop().create_future()
        stream.waiting[number] = waiter
        try:
            async with asyncio.timeout(timeout):
                async with stream.writing:
                    await stream.call.write(request)
                return await waiter
        except grpc.aio.AioRpcError as e:  # the stream ended before the request left
            raise StreamCallError(e.code(), e.details() or "") from e
        except asyncio.InvalidStateError as e:  # written after the stream finished
            raise StreamCallError(grpc.StatusCode.UNAVAILABLE, "the read stream had ended") from e
        except TimeoutError:
            stream.close(StreamCallError(grpc.StatusCode.UNAVAILABLE, "a batch on the stream timed out"))
            raise StreamCallError(grpc.StatusCode.DEADLINE_EXCEEDED, "no reply within the timeout") from None
        finally:
            stream.waiting.pop(number, None)

    def close(self) -> None:
        """Close every stream (the proxy is stopping)."""
        for stream in list(self._streams.values()):
            stream.close(StreamCallError(grpc.StatusCode.CANCELLED, "the proxy is closing"))
        self._streams.clear()
