"""Three coordinators and three chain nodes as real processes on 127.0.0.1, under a steady load.

Writes go straight to the chain's head over gRPC (each to a new key, so every acknowledged write
can be checked afterwards), reads to every node. Scenarios:
- kill -9 of the coordinator leader: a new leader is elected, registry changes continue, and the
  chain's reads and writes are not interrupted (the nodes' leases outlast the election);
- kill -9 of the head, of a middle node and of the tail: the coordinator removes it (epoch + 1),
  writes and reads continue, no acknowledged write is lost; restarted on its data, the node rejoins
  after the tail as syncing, catches up, and is promoted to tail.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest
from cluster_harness import ProcessCluster, wait_for

from keychain.proto import chain_pb2

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

SLOW = 0.5  # seconds: a chain operation slower than this counts as interrupted


@dataclass
class Load:
    cluster: ProcessCluster
    acked: dict[bytes, bytes] = field(default_factory=dict)
    outcomes: list[tuple[float, str, bool, float]] = field(default_factory=list)  # started, kind, ok, took
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def head(self) -> str | None:
        for name in self.cluster.names("node"):
            if self.cluster.procs[name].alive:
                try:
                    if self.cluster.node_status(name, timeout=0.3).role == "head":
                        return name
                except grpc.RpcError:
                    pass
        return None

    def _write_loop(self) -> None:
        head, i = None, 0
        while not self.stop.is_set():
            head = head or self.head()
            if head is None:
                time.sleep(0.02)
                continue
            i += 1
            key, value = f"key-{i}".encode(), f"value-{i}".encode()
            started, ok = time.monotonic(), False
            try:
                reply = self.cluster.write(head, key, value, request_id=f"w{i}", timeout=1.0)
                ok = reply.error.code == chain_pb2.OK and reply.results[0].error.code == chain_pb2.OK
            except grpc.RpcError:
                pass
            with self.lock:
                self.outcomes.append((started, "write", ok, time.monotonic() - started))
                if ok:
                    self.acked[key] = value
            if not ok:
                head = None
                time.sleep(0.01)
            else:
                time.sleep(0.005)

    def _read_loop(self) -> None:
        i = 0
        nodes = self.cluster.names("node")
        while not self.stop.is_set():
            name = nodes[i % len(nodes)]
            i += 1
            if not self.cluster.procs[name].alive:
                continue
            started = time.monotonic()
            try:
                code = self.cluster.read(name, b"key-1", timeout=1.0).error.code
                ok = code in (chain_pb2.OK, chain_pb2.NOT_FOUND)
            except grpc.RpcError:
                ok = False
            with self.lock:
                self.outcomes.append((started, f"read@{name}", ok, time.monotonic() - started))
            time.sleep(0.01)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._write_loop, daemon=True),
                        threading.Thread(target=self._read_loop, daemon=True)]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)

    def writes_acked_since(self, t0: float) -> int:
        with self.lock:
            return sum(1 for s, kind, ok, _ in self.outcomes if kind == "write" and ok and s >= t0)

    def interrupted(self, t0: float, t1: float, exclude: str = "") -> list[tuple[float, str, bool, float]]:
        with self.lock:
            return [o for o in self.outcomes
                    if t0 <= o[0] < t1 and (not o[2] or o[3] > SLOW) and not (exclude and o[1].endswith(exclude))]


@pytest.fixture
def cluster(tmp_path):
    c = ProcessCluster(tmp_path, coordinators=3, nodes=3)
    c.start_all()
    try:
        wait_for("three active chain members", lambda: sorted(c.roles().values()) == ["head", "middle", "tail"],
                 timeout=30, interval=0.1)
        wait_for("every node serving", lambda: all(c.node_status(n).lease_valid for n in c.names("node")),
                 timeout=10)
        yield c
    except BaseException:
        print(c.log_tails())
        raise
    finally:
        c.stop_all()


def check_no_acked_write_lost(c: ProcessCluster, load: Load, nodes: list[str]) -> None:
    assert load.acked, "the load acknowledged no write at all"
    for name in nodes:
        for key, value in load.acked.items():
            reply = c.read(name, key)
            assert reply.error.code == chain_pb2.OK and reply.value == value, (
                f"{name} lost acknowledged {key!r}: {reply}")


def test_killing_the_coordinator_leader_does_not_interrupt_the_chain(cluster):
    c = cluster
    load = Load(c)
    load.start()
    try:
        time.sleep(0.5)
        old = wait_for("a coordinator leader", c.leader, timeout=5)
        t0 = time.monotonic()
        c.kill(old)
        new = wait_for("a new coordinator leader", lambda: c.leader(exclude=(old,)), timeout=5)
        assert new != old
        survivor = next(n for n in c.names("coordinator") if n not in (old, new))
        code, body = c.http(survivor, "POST", "/v1/chains/second")
        assert code == 201, body
        time.sleep(max(0.0, t0 + 3.0 - time.monotonic()))  # past a full lease after the kill
        t1 = time.monotonic()
        assert load.writes_acked_since(t0) > 20
    finally:
        load.finish()
    assert load.interrupted(t0, t1) == []
    check_no_acked_write_lost(c, load, c.names("node"))


@pytest.mark.parametrize("role", ["head", "middle", "tail"])
def test_a_killed_node_is_replaced_and_rejoins_as_tail_when_restarted(cluster, role):
    c = cluster
    load = Load(c)
    load.start()
    try:
        time.sleep(0.5)
        before = c.chain_view()
        victim = next(m["id"] for m in before["members"] if m["role"] == role)
        t0 = time.monotonic()
        c.kill(victim)

        def reconfigured():
            chain = c.chain_view()
            return chain if chain and victim not in [m["id"] for m in chain["members"]] else None

        after = wait_for(f"the {role} to be removed", reconfigured, timeout=10)
        assert after["epoch"] > before["epoch"]
        assert sorted(m["role"] for m in after["members"]) == ["head", "tail"]
        flowing = wait_for("writes flowing again", lambda: load.writes_acked_since(time.monotonic() - 0.2) > 0,
                           timeout=5)
        assert flowing
        t_writes = time.monotonic() - t0

        c.start(victim)  # restarted on its own data
        wait_for(f"{victim} to rejoin as tail",
                 lambda: c.roles().get(victim) == "tail" and len(c.roles()) == 3, timeout=20, interval=0.1)
        wait_for(f"{victim} serving", lambda: c.node_status(victim).lease_valid, timeout=5)
        time.sleep(0.5)
    finally:
        load.finish()
    check_no_acked_write_lost(c, load, c.names("node"))
    assert t_writes < 5.0, f"writes took {t_writes:.2f}s to flow again"
