"""A TCP relay between network namespaces: what a ClusterIP Service or a port-forward does.

`Relay(listener, pick, connect)` accepts connections on `listener` (a listening socket made in
whatever namespace it should be reached in), asks `pick()` for a backend address per connection
(round robin over ready pods, say; none means the connection is closed at once, as a Service
without endpoints refuses), opens it with `connect(address)` (a socket made in a namespace that
reaches the backend) and copies bytes both ways. With `tls` it terminates TLS on the accepted
side (the API server's certificate). One thread per connection, each with its own select loop,
so a TLS connection is never read and written from two threads at once.

Written by hand: a relay that joins sockets of different network namespaces is a few lines
around `select`, and no library does it across namespaces.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]
CONNECT_TIMEOUT = 3.0


class Relay:
    """Accept, pick a backend, connect, copy (see module doc). Closed by `close()`."""

    def __init__(
        self,
        listener: socket.socket,
        pick: Callable[[], Address | None],
        connect: Callable[[Address], socket.socket],
        *,
        tls: ssl.SSLContext | None = None,
        name: str = "relay",
    ) -> None:
        self._listener = listener
        self._pick = pick
        self._connect = connect
        self._tls = tls
        self.name = name
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)
        listener.settimeout(0.2)
        self._thread.start()

    @property
    def address(self) -> Address:
        return self._listener.getsockname()[:2]

    def close(self) -> None:
        """Stop accepting and cut every open connection."""
        self._closed.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name=f"{self.name}-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        backend: socket.socket | None = None
        try:
            client.settimeout(CONNECT_TIMEOUT)
            if self._tls is not None:
                client = self._tls.wrap_socket(client, server_side=True)
            target = self._pick()
            if target is None:
                return
            backend = self._connect(target)
            with self._lock:
                if self._closed.is_set():
                    return
                self._open.update((client, backend))
            _pump(client, backend)
        except (OSError, ssl.SSLError) as exc:
            log.debug("relay connection ended relay=%s error=%r", self.name, exc)
        finally:
            for sock in (client, backend):
                if sock is not None:
                    with self._lock:
                        self._open.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.close()


def _pump(a: socket.socket, b: socket.socket) -> None:
    a.settimeout(None)
    b.settimeout(None)
    peers = {a: b, b: a}
    while True:
        ready = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
        if not ready:
            ready, _, _ = select.select([a, b], [], [], 30.0)
        for source in ready:
            data = source.recv(65536)
            if not data:
                return
            peers[source].sendall(data)


def round_robin(addresses: Callable[[], list[Address]]) -> Callable[[], Address | None]:
    """A `pick` that cycles over whatever `addresses()` lists at each connection."""
    counter = itertools.count()

    def pick() -> Address | None:
        current = addresses()
        return current[next(counter) % len(current)] if current else None

    return pick


def connector(make_socket: Callable[[], socket.socket]) -> Callable[[Address], socket.socket]:
    """A `connect` that dials from sockets `make_socket()` returns (e.g. made in a namespace)."""

    def connect(address: Address) -> socket.socket:
        sock = make_socket()
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    return connect
