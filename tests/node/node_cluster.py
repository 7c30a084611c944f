"""Real `keychain node --static` processes on 127.0.0.1 for process tests and the benchmark.

A `NodeCluster` starts nodes on ephemeral ports (each prints its port on a `listening on` line),
configures them directly with the Configure RPC (the test plays the coordinator), and can kill -9
and restart a node on the same data directory.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from keychain.proto import chain_pb2, chain_pb2_grpc

START_TIMEOUT = 20.0


@dataclass
class NodeProcess:
    id: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    channel: grpc.Channel | None = None
    stub: chain_pb2_grpc.ChainNodeStub | None = None
    extra_args: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def node_command(node_id: str, data_dir: Path, chain: str = "main", extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-P", "-m", "keychain", "node", "--id", node_id, "--listen", "127.0.0.1:0",
            "--data-dir", str(data_dir), "--chain", chain, "--static", "--log-level", "info", *(extra or [])]


class NodeCluster:
    def __init__(self, root: Path, ids: list[str], chain: str = "main") -> None:
        self.root = root
        self.chain = chain
        self.nodes = {i: NodeProcess(i, root / i, root / f"{i}.log") for i in ids}
        self.epoch = 0

    # ---- processes ----

    def start(self, node_id: str) -> NodeProcess:
        n = self.nodes[node_id]
        log = n.log_path.open("ab")
        n.proc = subprocess.Popen(
            node_command(node_id, n.data_dir, self.chain, n.extra_args),
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        assert n.proc.stdout is not None
        line = n.proc.stdout.readline().decode()  # blocks until the node serves (or dies)
        if "listening on" not in line:
            n.proc.wait(timeout=10)
            raise RuntimeError(f"node {node_id} did not start (exit {n.proc.returncode}):\n{n.log_text()[-3000:]}")
        n.address = line.rsplit(" ", 1)[1].strip()
        n.channel = grpc.insecure_channel(n.address)
        n.stub = chain_pb2_grpc.ChainNodeStub(n.channel)
        return n

    def start_all(self) -> None:
        for i in self.nodes:
            self.start(i)

    def kill(self, node_id: str) -> None:
        n = self.nodes[node_id]
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGKILL)
            n.proc.wait(timeout=10)
        self._close_channel(n)

    def stop(self, node_id: str, timeout: float = 10.0) -> int:
        n = self.nodes[node_id]
        code = 0
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGTERM)
            try:
                code = n.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                code = n.proc.wait()
        self._close_channel(n)
        return code

    def _close_channel(self, n: NodeProcess) -> None:
        if n.channel is not None:
            n.channel.close()
            n.channel = None
        if n.proc is not None and n.proc.stdout is not None:
            n.proc.stdout.close()

    def close(self) -> None:
        for i in self.nodes:
            self.kill(i)

    def __enter__(self) -> NodeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- configuration ----

    def configure(self, active: list[str], syncing: list[str] | None = None, lease_ms: int = 0,
                  only: list[str] | None = None) -> int:
        """A new epoch with `active` in order head..tail, then `syncing`; sent to every listed node."""
        self.epoch += 1
        members = [chain_pb2.Member(id=i, address=self.nodes[i].address) for i in active]
        members += [chain_pb2.Member(id=i, address=self.nodes[i].address, state=chain_pb2.SYNCING)
                    for i in syncing or []]
        config = chain_pb2.ChainConfig(chain=self.chain, epoch=self.epoch, members=members)
        for i in only or [*active, *(syncing or [])]:
            reply = self.stub(i).Configure(chain_pb2.ConfigureRequest(config=config, lease_ms=lease_ms), timeout=5)
            assert reply.error.code == chain_pb2.OK, (i, reply.error)
        return self.epoch

    # ---- calls ----

    def stub(self, node_id: str) -> chain_pb2_grpc.ChainNodeStub:
        stub = self.nodes[node_id].stub
        assert stub is not None, f"node {node_id} is not running"
        return stub

    def write(self, node_id: str, ops: list[chain_pb2.WriteOp], epoch: int | None = None) -> chain_pb2.WriteReply:
        request = chain_pb2.WriteRequest(epoch=self.epoch if epoch is None else epoch, ops=ops)
        return self.stub(node_id).Write(request, timeout=10)

    def put(self, node_id: str, key: bytes, value: bytes, request_id: str = "") -> chain_pb2.WriteReply:
        return self.write(node_id, [chain_pb2.WriteOp(request_id=request_id, key=key, value=value)])

    def read(self, node_id: str, key: bytes, consistency: int = chain_pb2.STRONG,
             epoch: int | None = None) -> chain_pb2.ReadReply:
        request = chain_pb2.ReadRequest(epoch=self.epoch if epoch is None else epoch, key=key,
                                        consistency=consistency)
        return self.stub(node_id).Read(request, timeout=10)

    def status(self, node_id: str) -> chain_pb2.NodeStatus:
        return self.stub(node_id).GetStatus(chain_pb2.StatusRequest(), timeout=5)


def wait_for[T](what: str, check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except grpc.RpcError as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


