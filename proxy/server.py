"""One proxy process: the coordinator watch, the HTTP server and the gRPC KV server on one loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import grpc
import uvicorn

from keychain.proto import kv_pb2_grpc

from .channels import CHANNEL_OPTIONS
from .config import ProxyConfig
from .gateway import ChainGateway
from .grpc_api import KVService
from .http_api import create_app
from .metrics import ProxyMetrics
from .topology import Topology
from .watcher import CoordinatorWatcher

log = logging.getLogger("keychain.proxy")


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: it re-raises SIGTERM after a clean shutdown,
    which would make a supervisor see a killed process; ProxyServer handles signals instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ProxyServer:
    def __init__(self, config: ProxyConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        rng = rng or random.Random()
        self.metrics = ProxyMetrics()
        self.watcher = CoordinatorWatcher(
            config.coordinators,
            config.chain,
            rng=rng,
            call_timeout=config.attempt_timeout,
            poll_interval=config.topology_poll_interval,
            on_change=self._on_change,
            tls_files=config.tls_files,
        )
        self.gateway = ChainGateway(config, self.watcher, self.metrics, rng=rng)
        self.app = create_app(config, self.gateway, self.watcher, self.metrics)
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._http: uvicorn.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _on_change(self, topology: Topology) -> None:
        self.metrics.epoch.set(topology.epoch)
        self.metrics.topology_changes.inc()
        task = asyncio.get_running_loop().create_task(self.gateway.on_topology(topology))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve(self, on_ready: Callable[[ProxyServer], None] | None = None) -> None:
        """Run until `stop()` (or a signal, in the main thread); `on_ready` once both servers listen."""
        sock = bind_socket(*self.config.listen)
        self.http_port = sock.getsockname()[1]
        grpc_server: grpc.aio.Server | None = None
        if self.config.grpc_listen is not None:
            grpc_server = grpc.aio.server(options=CHANNEL_OPTIONS)
            kv_pb2_grpc.add_KVServicer_to_server(
                KVService(self.config, self.gateway, self.metrics), grpc_server
            )
            host, port = self.config.grpc_listen
            self.grpc_port = grpc_server.add_insecure_port(
                f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            )
            if self.grpc_port == 0:
                raise OSError(f"cannot listen for gRPC on {host}:{port}")
            await grpc_server.start()
        watch = asyncio.get_running_loop().create_task(self.watcher.run())
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        self._http = _HttpServer(
            uvicorn.Config(
                self.app,
                log_config=None,
                log_level=self.config.log_level,
                access_log=False,
                lifespan="off",
                http="httptools",
                interface="asgi3",
                server_header=False,
            )
        )
        announce = asyncio.get_running_loop().create_task(self._announce(on_ready))
        try:
            await self._http.serve(sockets=[sock])
        finally:
            announce.cancel()
            watch.cancel()
            if grpc_server is not None:
                await grpc_server.stop(grace=1.0)
            await self.watcher.close()
            await self.gateway.close()
            sock.close()

    async def _announce(self, on_ready: Callable[[ProxyServer], None] | None) -> None:
        assert self._http is not None
        while not self._http.started:
            await asyncio.sleep(0.01)
        host = self.config.listen[0]
        log.info(
            "serving http=http://%s:%d grpc=%s chain=%s coordinators=%s",
            host,
            self.http_port,
            f"{self.config.grpc_listen[0]}:{self.grpc_port}" if self.grpc_port else "off",
            self.config.chain,
            ",".join(self.config.coordinators),
        )
        if on_ready is not None:
            on_ready(self)

    def stop(self) -> None:
        """Ask the servers to shut down; safe to call from another thread."""
        if self._http is not None:
            self._http.should_exit = True
