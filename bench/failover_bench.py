"""Failover times of a local cluster (3 coordinators + 3 chain nodes, real processes on 127.0.0.1).

    PYTHONSAFEPATH=1 .venv/bin/python bench/failover_bench.py --runs 5

Each run starts a fresh cluster and measures, one after the other, with a writer and a reader
running against the chain nodes the whole time (writes at the head, reads spread over the nodes,
straight over gRPC):

- coordinator leader killed (kill -9) -> a new leader elected (as a surviving member reports it);
  and during the following 3 s, the chain operations that failed or took longer than 200 ms
  (the target is none: the lease outlasts the election);
- chain head, middle and tail killed (kill -9), each in turn on a fresh cluster member layout
  -> the first write acknowledged after the kill ("writes flowing again").

Prints every run and the medians. Figures depend on the machine; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from cluster_harness import ProcessCluster, wait_for

from keychain.proto import chain_pb2

SLOW = 0.2  # seconds: an operation slower than this counts as interrupted


@dataclass
class Op:
    kind: str  # write | read
    started: float
    took: float
    ok: bool


@dataclass
class Load:
    """A writer (at the head) and a reader (round-robin over the nodes), until stopped."""

    cluster: ProcessCluster
    ops: list[Op] = field(default_factory=list)
    acked: dict[bytes, bytes] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def head(self) -> str | None:
        for name in self.cluster.names("node"):
            if not self.cluster.procs[name].alive:
                continue
            try:
                if self.cluster.node_status(name, timeout=0.2).role == "head":
                    return name
            except grpc.RpcError:
                continue
        return None

    def writer(self) -> None:
        head, i = None, 0
        while not self.stop.is_set():
            head = head or self.head()
            if head is None:
                time.sleep(0.01)
                continue
            i += 1
            key, value = f"k{i % 50}".encode(), f"v{i}".encode()
            t = time.monotonic()
            ok = False
            try:
                reply = self.cluster.write(head, key, value, request_id=f"bench-{id(self)}-{i}", timeout=0.5)
                ok = reply.error.code == chain_pb2.OK and reply.results[0].error.code == chain_pb2.OK
            except grpc.RpcError:
                pass
            with self.lock:
                self.ops.append(Op("write", t, time.monotonic() - t, ok))
                if ok:
                    self.acked[key] = value
            if not ok:
                head = None
                time.sleep(0.005)

    def reader(self) -> None:
        nodes, i = self.cluster.names("node"), 0
        while not self.stop.is_set():
            name = nodes[i % len(nodes)]
            i += 1
            if not self.cluster.procs[name].alive:
                continue
            t = time.monotonic()
            try:
                reply = self.cluster.read(name, b"k1", timeout=0.5)
                ok = reply.error.code in (chain_pb2.OK, chain_pb2.NOT_FOUND)
            except grpc.RpcError:
                ok = False
            with self.lock:
                self.ops.append(Op("read", t, time.monotonic() - t, ok))
            time.sleep(0.002)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.writer, daemon=True), threading.Thread(target=self.reader, daemon=True)]
        for t in threads:
            t.start()
        return threads

    def first_write_after(self, t0: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                done = [op for op in self.ops if op.kind == "write" and op.ok and op.started >= t0]
            if done:
                return done[0].started + done[0].took - t0
            time.sleep(0.01)
        return None

    def interrupted(self, t0: float, t1: float) -> tuple[int, int, int]:
        """(operations, failed, slow) that started within [t0, t1)."""
        with self.lock:
            window = [op for op in self.ops if t0 <= op.started < t1]
        return len(window), sum(not op.ok for op in window), sum(op.ok and op.took > SLOW for op in window)


def ready_cluster(root: Path) -> ProcessCluster:
    c = ProcessCluster(root, coordinators=3, nodes=3, log_level="warning")
    c.start_all()
    try:
        wait_for("three active chain members", lambda: sorted(c.roles().values()) == ["head", "middle", "tail"],
                 timeout=30, interval=0.1)
        wait_for("every node serving", lambda: all(c.node_status(n).lease_valid for n in c.names("node")),
                 timeout=10)
    except BaseException:
        c.stop_all()  # a cluster that never formed must not outlive the bench
        raise
    return c


def leader_seen(c: ProcessCluster, old: str) -> str | None:
    for name in c.names("coordinator"):
        if name == old or not c.procs[name].alive:
            continue
        try:
            code, body = c.http_get(name, "/healthz", timeout=0.2)
        except OSError:
            continue
        if code == 200 and body.get("leader") not in ("", None, old):
            return body["leader"]
    return None


def one_run(root: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    c = ready_cluster(root / "coord")
    load = Load(c)
    threads = load.start()
    try:
        time.sleep(1.0)
        old = wait_for("a leader", c.leader, timeout=5)
        t0 = time.monotonic()
        c.kill(old)
        wait_for("a new leader", lambda: leader_seen(c, old), timeout=10, interval=0.005)
        out["coordinator leader -> new leader (s)"] = time.monotonic() - t0
        time.sleep(3.0)
        n, failed, slow = load.interrupted(t0, t0 + 3.0)
        out["ops during coordinator election"] = n
        out["failed ops during coordinator election"] = failed
        out[f"ops slower than {SLOW * 1000:.0f} ms during coordinator election"] = slow
    finally:
        load.stop.set()
        for t in threads:
            t.join(2)
        c.stop_all()

    for role in ("head", "middle", "tail"):
        c = ready_cluster(root / role)
        load = Load(c)
        threads = load.start()
        try:
            time.sleep(1.0)
            victim = next(n for n, r in c.roles().items() if r == role)
            t0 = time.monotonic()
            c.kill(victim)
            took = load.first_write_after(t0, timeout=15)
            out[f"{role} killed -> writes flowing (s)"] = took if took is not None else float("nan")
        finally:
            load.stop.set()
            for t in threads:
                t.join(2)
            c.stop_all()
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    results: list[dict[str, float]] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="keychain-failover-") as tmp:
            r = one_run(Path(tmp))
        results.append(r)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in r.items()), flush=True)
    print(f"\nmedians over {args.runs} runs  (command: PYTHONSAFEPATH=1 .venv/bin/python bench/failover_bench.py "
          f"--runs {args.runs})")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key:<58} {statistics.median(values):8.3f}   (min {min(values):.3f}, max {max(values):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
