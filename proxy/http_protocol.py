"""The proxy's HTTP/1.1 protocol: uvicorn's httptools protocol, with each response sent in one write.

uvicorn writes a response's status line and headers when the application sends
`http.response.start`, and its body when it sends `http.response.body`: two transport writes, so two
send(2) calls and two packets per response. For a key-value answer of a few hundred bytes those two
calls were a quarter of the proxy's CPU under load (py-spy, strong reads at 64 connections), and the
proxy's CPU is what bounds reads through one proxy. uvicorn has no setting for this, hence this small
class: the connection's transport is wrapped so that the writes made within one turn of the event loop
are joined and leave together at the end of that turn.

Ordering is kept (every write goes through the one buffer), and nothing waits longer than the current
loop turn; closing the connection first sends what is buffered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes within one event-loop turn leave as a single write of the transport
    it wraps; everything else is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer `data`; the first write of a turn schedules the flush at the turn's end."""
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is buffered, in one write (a closing transport drops it, as its write would)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
