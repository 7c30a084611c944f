"""One proxy process: the coordinator watch, the HTTP server and the gRPC KV server on one loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import grpc
import uvicorn

from keychain.proto import kv_pb2_grpc

from .channels import CHANNEL_OPTIONS
from .config import ProxyConfig, PublicTls
from .gateway import ChainGateway
from .grpc_api import KVService
from .http_api import create_app
from .http_protocol import CoalescingHttpToolsProtocol
from .metrics import ProxyMetrics
from .topology import Topology
from .unreachable_reporter import UnreachableReporter
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


def uvicorn_ssl_options(tls: PublicTls | None) -> dict[str, object]:
    """uvicorn's settings for HTTPS with `tls` (client certificates required when it names a CA)."""
    if tls is None:
        return {}
    options: dict[str, object] = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    if tls.client_ca is not None:
        options |= {"ssl_ca_certs": str(tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def grpc_server_credentials(tls: PublicTls) -> grpc.ServerCredentials:
    """The public gRPC port's TLS: the same certificate (and client CA) as HTTPS."""
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=tls.client_ca.read_bytes() if tls.client_ca is not None else None,
        require_client_auth=tls.client_ca is not None,
    )


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
        self.reporter = UnreachableReporter(self.gateway.reachability, self.watcher, self.metrics,
                                            reporter=f"proxy-{socket.gethostname()}-{os.getpid()}",
                                            probe=self.gateway.probe)
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
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            public_tls = self.config.public_tls
            self.grpc_port = (
                grpc_server.add_insecure_port(target)
                if public_tls is None
                else grpc_server.add_secure_port(target, grpc_server_credentials(public_tls))
            )
            if self.grpc_port == 0:
                raise OSError(f"cannot listen for gRPC on {host}:{port}")
            await grpc_server.start()
        watch = asyncio.get_running_loop().create_task(self.watcher.run())
        reports = asyncio.get_running_loop().create_task(self.reporter.run())
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
                http=CoalescingHttpToolsProtocol,  # a response in one write, not two
                interface="asgi3",
                server_header=False,
                proxy_headers=False,  # nothing reads the client's address: no X-Forwarded-* pass per request
                **uvicorn_ssl_options(self.config.public_tls),
            )
        )
        announce = asyncio.get_running_loop().create_task(self._announce(on_ready))
        try:
            await self._http.serve(sockets=[sock])
        finally:
            announce.cancel()
            watch.cancel()
            reports.cancel()
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
            "serving http=%s://%s:%d grpc=%s chain=%s coordinators=%s",
            "http" if self.config.public_tls is None else "https",
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
