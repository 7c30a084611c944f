"""Real coordinator and chain node processes on 127.0.0.1, for the process tests and the failover bench.

`ProcessCluster` starts `keychain coordinator` and `keychain node` exactly as `keychain up` does,
each with its own data directory and log file, and offers what the scenarios need: kill -9 a
process, restart it on the same data, read the coordinators' status, and write and read keys
straight at the chain nodes over gRPC. `ChainLoad` keeps writes (and reads) flowing at the chain
while a scenario runs, and records every operation's outcome.

With `tls=True` every process gets a certificate from a CA made for the cluster (in `root/tls`) and
the coordinators an admin token; the harness itself calls the nodes as a proxy and the admin API as
the operator, and follows its own certificate files when a scenario rotates them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from keychain import tls as keychain_tls
from keychain.proto import chain_pb2, chain_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for[T](what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # a process still starting up, a connection refused
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


@dataclass
class Proc:
    name: str
    kind: str
    address: str
    argv: list[str]
    log_path: Path
    http: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ProcessCluster:
    root: Path
    coordinators: int = 3
    nodes: int = 3
    chain: str = "main"
    log_level: str = "info"
    tls: bool = False
    node_data: Path | None = None  # where the nodes' data directories go (default: root)
    node_args: tuple[str, ...] = ()  # more arguments for every `keychain node`
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.coordinators + self.nodes)
        self.python = [sys.executable, "-P", "-m", "keychain"]
        coord_addrs = {f"coord-{i}": f"127.0.0.1:{ports[i - 1]}" for i in range(1, self.coordinators + 1)}
        peers = ",".join(f"{k}={v}" for k, v in coord_addrs.items())
        self.coordinator_list = ",".join(coord_addrs.values())
        for i, (name, addr) in enumerate(coord_addrs.items()):
            http = f"127.0.0.1:{ports[self.coordinators + i]}"
            self.procs[name] = Proc(name, "coordinator", addr, [
                *self.python, "coordinator", "--id", name, "--listen", addr, "--http", http,
                "--data-dir", str(self.root / name), "--peers", peers, "--chain", self.chain,
                "--log-level", self.log_level,
            ], self.root / "logs" / f"{name}.log", http=http)
        for i in range(1, self.nodes + 1):
            name = f"node-{i}"
            addr = f"127.0.0.1:{ports[2 * self.coordinators + i - 1]}"
            self.procs[name] = Proc(name, "node", addr, [
                *self.python, "node", "--id", name, "--listen", addr, "--advertise", addr,
                "--data-dir", str((self.node_data or self.root) / name), "--chain", self.chain,
                "--coordinator", self.coordinator_list, "--log-level", self.log_level, *self.node_args,
            ], self.root / "logs" / f"{name}.log")
        self._channels: dict[str, grpc.Channel] = {}
        self._retired_channels: list[grpc.Channel] = []
        self.tls_dir = self.root / "tls"
        self.admin_token = "harness-admin-token"
        if self.tls:
            self._issue_certificates()

    # ---- mutual TLS ----

    def _issue_certificates(self) -> None:
        self.ca = keychain_tls.issue_ca(self.chain)
        self.tls_files: dict[str, keychain_tls.TlsFiles] = {}
        token_file = self.tls_dir / "admin-token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(self.admin_token)
        for p in self.procs.values():
            files = self.tls_files[p.name] = self.issue(p.kind, p.name)
            p.argv += files.argv()
            if p.kind == "coordinator":
                p.argv += ["--admin-token-file", str(token_file)]
        self.client_files = self.issue("proxy", "harness")
        self.operator_files = self.issue("operator", "harness")
        self._client_stamp = self.client_files.stamp()
        self._credentials = self._client_credentials()

    def issue(self, kind: str, name: str, ca: keychain_tls.Issued | None = None) -> keychain_tls.TlsFiles:
        """(Re)issue the certificate of `kind`/`name` from `ca` (the cluster's) into the TLS directory."""
        return keychain_tls.issue_files(self.tls_dir, ca or self.ca, kind=kind, name=name,
                                        hosts=["127.0.0.1", "localhost"])

    def _client_credentials(self) -> grpc.ChannelCredentials:
        return keychain_tls.channel_credentials(self.client_files)

    def _https_context(self) -> Any:
        return keychain_tls.client_ssl_context(self.operator_files) if self.tls else None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    # ---- processes ----

    def names(self, kind: str) -> list[str]:
        return [p.name for p in self.procs.values() if p.kind == kind]

    def start(self, name: str) -> None:
        p = self.procs[name]
        p.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(p.log_path, "ab") as log:
            env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONUNBUFFERED": "1"}
            p.process = subprocess.Popen(p.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)

    def start_all(self) -> None:
        for name in self.names("coordinator") + self.names("node"):
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        assert p.process is not None
        p.process.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            p.process.wait(10)

    def stop_all(self) -> None:
        for name in self.names("node") + self.names("coordinator"):
            p = self.procs[name]
            if p.alive:
                p.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for p in self.procs.values():
            if p.process is not None:
                try:
                    p.process.wait(5)
                except subprocess.TimeoutExpired:
                    p.process.kill()
                    p.process.wait()
        for ch in [*self._channels.values(), *self._retired_channels]:
            ch.close()
        self._channels.clear()
        self._retired_channels.clear()

    def log_tails(self, lines: int = 30) -> str:
        out = []
        for p in self.procs.values():
            if p.log_path.exists():
                tail = p.log_path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {p.name} ---\n" + "\n".join(tail))
        return "\n".join(out)

    # ---- coordinators ----

    def http_get(self, name: str, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        url = f"{self.scheme}://{self.procs[name].http}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=self._https_context()) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def http(self, name: str, method: str, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        req = urllib.request.Request(f"{self.scheme}://{self.procs[name].http}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._https_context()) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def status(self, exclude: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """/v1/status from the first live coordinator that answers 200."""
        for name in self.names("coordinator"):
            if name in exclude or not self.procs[name].alive:
                continue
            try:
                code, body = self.http_get(name, "/v1/status")
            except (OSError, ValueError):
                continue
            if code == 200:
                return body
        return None

    def leader(self, exclude: tuple[str, ...] = ()) -> str | None:
        st = self.status(exclude)
        if st and st["leader"] and st["leader"] not in exclude:
            return st["leader"]
        return None

    def chain_view(self) -> dict[str, Any] | None:
        st = self.status()
        if not st:
            return None
        return next((c for c in st["chains"] if c["name"] == self.chain), None)

    def roles(self) -> dict[str, str]:
        """node -> head | middle | tail | syncing, per the coordinator."""
        chain = self.chain_view()
        return {m["id"]: m["role"] for m in chain["members"]} if chain else {}

    # ---- nodes ----

    def node_stub(self, name: str) -> chain_pb2_grpc.ChainNodeStub:
        stamp = self.client_files.stamp() if self.tls else None
        if self.tls and stamp != self._client_stamp:
            # Rotated: new channels with the new files; calls in flight finish on the old ones. Files
            # half-way through a rotation (a new certificate, the old key) keep the current ones.
            with contextlib.suppress(ValueError):
                self._credentials = self._client_credentials()
                self._client_stamp = stamp
                self._retired_channels += self._channels.values()
                self._channels = {}
        ch = self._channels.get(name)
        if ch is None:
            address = self.procs[name].address
            ch = self._channels[name] = (grpc.secure_channel(address, self._credentials) if self.tls
                                         else grpc.insecure_channel(address))
        return chain_pb2_grpc.ChainNodeStub(ch)

    def node_status(self, name: str, timeout: float = 1.0) -> chain_pb2.NodeStatus:
        return self.node_stub(name).GetStatus(chain_pb2.StatusRequest(), timeout=timeout)

    def write(self, name: str, key: bytes, value: bytes, request_id: str, timeout: float = 2.0
              ) -> chain_pb2.WriteReply:
        """One PUT at node `name` (which should be the head), in the epoch the node reports."""
        epoch = self.node_status(name).epoch
        op = chain_pb2.WriteOp(request_id=request_id, key=key, kind=chain_pb2.PUT, value=value)
        return self.node_stub(name).Write(chain_pb2.WriteRequest(epoch=epoch, ops=[op]), timeout=timeout)

    def read(self, name: str, key: bytes, timeout: float = 2.0) -> chain_pb2.ReadReply:
        epoch = self.node_status(name).epoch
        return self.node_stub(name).Read(chain_pb2.ReadRequest(epoch=epoch, key=key), timeout=timeout)

    # ---- exposure ----

    def endpoints_open_without_credentials(self) -> list[str]:
        """The internal endpoints that answer a caller with no certificate and no token: a node's or
        coordinator's gRPC (GetStatus / GetClusterStatus in plaintext), an admin API (GET /v1/status
        over HTTP, or over HTTPS without a client certificate)."""
        open_ = []
        for p in self.procs.values():
            with grpc.insecure_channel(p.address) as ch:
                try:
                    if p.kind == "node":
                        chain_pb2_grpc.ChainNodeStub(ch).GetStatus(chain_pb2.StatusRequest(), timeout=1)
                    else:
                        coordinator_pb2_grpc.CoordinatorStub(ch).GetClusterStatus(
                            coordinator_pb2.ClusterStatusRequest(), timeout=1)
                    open_.append(f"{p.name} grpc {p.address}")
                except grpc.RpcError:
                    pass
            if p.http:
                anonymous = ssl.create_default_context(cafile=str(self.client_files.ca)) if self.tls else None
                for scheme, context in (("http", None), ("https", anonymous)):
                    try:
                        with urllib.request.urlopen(f"{scheme}://{p.http}/v1/status", timeout=2, context=context):
                            open_.append(f"{p.name} admin {scheme}://{p.http}")
                    except (OSError, ValueError):  # refused, 401, or no TLS on that port
                        pass
        return open_


def _answers_a_read(c: ProcessCluster, name: str) -> bool:
    try:
        return c.read(name, b"readiness-probe", timeout=1.0).error.code in (chain_pb2.OK, chain_pb2.NOT_FOUND)
    except grpc.RpcError:
        return False


@contextlib.contextmanager
def running_cluster(root: Path, **options: Any) -> Iterator[ProcessCluster]:
    """A started `ProcessCluster(root, **options)` whose chain has every node active and serving;
    the processes' log tails are printed if the scenario fails, and everything is stopped after."""
    c = ProcessCluster(root, **options)
    c.start_all()
    roles = sorted(["head", *["middle"] * (c.nodes - 2), "tail"] if c.nodes > 1 else ["head"])
    try:
        wait_for(f"{c.nodes} active chain members", lambda: sorted(c.roles().values()) == roles,
                 timeout=30, interval=0.1)
        wait_for("every node serving", lambda: all(c.node_status(n).lease_valid for n in c.names("node")),
                 timeout=10)
        # A tail just promoted holds a lease before it is level with its predecessor in the new
        # epoch (it answers UNAVAILABLE until then): a scenario starts once every node answers a read.
        wait_for("every node answers a read", lambda: all(_answers_a_read(c, n) for n in c.names("node")),
                 timeout=10)
        yield c
    except BaseException:
        print(c.log_tails())
        raise
    finally:
        c.stop_all()


@dataclass
class Op:
    """One chain operation of a `ChainLoad`: what, where, when it started, how long it took, how it ended."""

    kind: str  # write | read
    node: str
    started: float  # time.monotonic()
    took: float
    ok: bool


class ChainLoad:
    """A writer at the chain's head (a new key each time) and optionally a reader round-robin over the
    nodes, straight over gRPC, until `finish`; each loop ends by itself after `max_ops` operations."""

    def __init__(self, cluster: ProcessCluster, *, reads: bool = True, timeout: float = 1.0,
                 write_pause: float = 0.005, read_pause: float = 0.01, max_ops: int = 20_000) -> None:
        self.cluster = cluster
        self.reads = reads
        self.timeout = timeout
        self.write_pause = write_pause
        self.read_pause = read_pause
        self.max_ops = max_ops
        self.ops: list[Op] = []
        self.acked: dict[bytes, bytes] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def head(self) -> str | None:
        for name in self.cluster.names("node"):
            if self.cluster.procs[name].alive:
                try:
                    if self.cluster.node_status(name, timeout=0.3).role == "head":
                        return name
                except grpc.RpcError:
                    pass
        return None

    def _record(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def _write_loop(self) -> None:
        head, i = None, 0
        while not self.stop.is_set() and i < self.max_ops:
            head = head or self.head()
            if head is None:
                time.sleep(0.02)
                continue
            i += 1
            key, value = f"key-{i}".encode(), f"value-{i}".encode()
            started, ok = time.monotonic(), False
            try:
                reply = self.cluster.write(head, key, value, request_id=f"w{i}", timeout=self.timeout)
                ok = reply.error.code == chain_pb2.OK and reply.results[0].error.code == chain_pb2.OK
            except grpc.RpcError:
                pass
            with self.lock:
                self.ops.append(Op("write", head, started, time.monotonic() - started, ok))
                if ok:
                    self.acked[key] = value
            if not ok:
                head = None
                time.sleep(0.01)
            else:
                time.sleep(self.write_pause)

    def _read_loop(self) -> None:
        nodes = self.cluster.names("node")
        for i in range(self.max_ops):
            if self.stop.is_set():
                return
            name = nodes[i % len(nodes)]
            if not self.cluster.procs[name].alive:
                continue
            started = time.monotonic()
            try:
                code = self.cluster.read(name, b"key-1", timeout=self.timeout).error.code
                ok = code in (chain_pb2.OK, chain_pb2.NOT_FOUND)
            except grpc.RpcError:
                ok = False
            self._record(Op("read", name, started, time.monotonic() - started, ok))
            time.sleep(self.read_pause)

    def start(self) -> None:
        loops = [self._write_loop, self._read_loop] if self.reads else [self._write_loop]
        self.threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
        for t in self.threads:
            t.start()

    def finish(self, timeout: float = 5.0) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)

    def ops_between(self, t0: float, t1: float) -> list[Op]:
        """The operations that started within [t0, t1)."""
        with self.lock:
            return [op for op in self.ops if t0 <= op.started < t1]

    def writes_acked_since(self, t0: float) -> int:
        with self.lock:
            return sum(1 for op in self.ops if op.kind == "write" and op.ok and op.started >= t0)

    def interrupted(self, t0: float, t1: float, slow: float) -> list[Op]:
        """The operations started within [t0, t1) that failed or took longer than `slow` seconds."""
        return [op for op in self.ops_between(t0, t1) if not op.ok or op.took > slow]

    def first_write_after(self, t0: float, timeout: float) -> float | None:
        """Seconds from `t0` until the first write started at or after it was acknowledged; None if none
        within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                done = [op for op in self.ops if op.kind == "write" and op.ok and op.started >= t0]
            if done:
                return done[0].started + done[0].took - t0
            time.sleep(0.01)
        return None

    def longest_gap(self) -> float:
        """The longest time between two consecutive acknowledged writes."""
        with self.lock:
            acked_at = [op.started + op.took for op in self.ops if op.kind == "write" and op.ok]
        return max((b - a for a, b in itertools.pairwise(acked_at)), default=0.0)
