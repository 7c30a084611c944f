"""A response leaves the proxy in one write: uvicorn writes its head and its body separately, and the
proxy's transport joins the writes of one event-loop turn (two send(2) calls cost a quarter of the
proxy's CPU under load)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import uvicorn
from keychain.proxy.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 1)}.get(name, default)


async def test_writes_of_one_loop_turn_leave_together_and_in_order():
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert raw.writes == [], "nothing leaves before the turn ends"
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert raw.writes[-1] == b"next", "a later turn's write is a write of its own"
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 1), "the rest is the wrapped transport's"


async def test_closing_sends_what_is_buffered_first_and_a_closed_transport_gets_nothing():
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert raw.writes == [b"last words"] and raw.closed
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert raw.writes == [b"last words"]


@pytest.fixture
async def served():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http=CoalescingHttpToolsProtocol,
                                           log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_keep_alive_requests_through_uvicorn_get_whole_answers(served):
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # one connection, several requests
            async with session.get(f"{served}/x") as resp:
                assert resp.status == 200
                assert await resp.read() == b"hello"
