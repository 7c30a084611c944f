"""Chaos: 3 coordinators and 3 chain nodes, each in its own network namespace, under load from a
client namespace, while the network partitions the head, cuts off the coordinator leader and slows
a node. Every history must be linearizable, no acknowledged write may be lost, and the chain must
come back to three active members taking writes."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from chaos_netns_helpers import needs_netns
from gray_cluster import assert_sound

from keychain.testing.history import read_history
from keychain.testing.netns import Network

pytestmark = [*needs_netns(), pytest.mark.slow, pytest.mark.timeout(120)]

COORDINATORS = ["coord-1", "coord-2", "coord-3"]
NODES = ["node-1", "node-2", "node-3"]
COORD_PORT, NODE_PORT = 7001, 7101
CLIENT_SCRIPT = Path(__file__).resolve().parent / "chaos_client.py"
RECOVERY_TIMEOUT = 20.0  # seconds for the chain to get back to 3 active members after a heal


@dataclass
class ChaosCluster:
    net: Network
    workdir: Path
    client: subprocess.Popen[str]

    def ask(self, command: str, timeout: float = 15.0) -> dict:
        """Send one command to the client process and read its one-line JSON answer."""
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(command + "\n")
        self.client.stdin.flush()
        line = _readline(self.client, timeout)
        if not line:
            raise AssertionError(f"the client process died answering {command!r}\n{self.logs()}")
        return json.loads(line)

    def topology(self) -> dict:
        return self.ask("topology")

    def wait_for(self, what: str, predicate, timeout: float = RECOVERY_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        topo = self.topology()
        while not predicate(topo):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.0f}s; last topology {topo}\n{self.logs()}")
            time.sleep(0.3)
            topo = self.topology()
        return topo

    def wait_healthy(self) -> dict:
        """Three active members and a head: the chain has recovered."""
        return self.wait_for("chain of 3 active members", lambda t: t["head"] and
                             sum(state == "ACTIVE" for _, state in t["members"]) == 3)

    def writes_flow(self, at_least: int = 5, timeout: float = 10.0) -> None:
        start = self.topology()["ok_writes"]
        self.wait_for(f"{at_least} acknowledged writes", lambda t: t["ok_writes"] >= start + at_least, timeout)

    def logs(self, lines: int = 15) -> str:
        out = []
        for path in sorted((self.workdir / "logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def finish(self) -> tuple[list, dict]:
        """Stop the load; the checked history and the acknowledged writes with the final reads."""
        self.ask("stop", timeout=60.0)
        history = read_history(self.workdir / "history.jsonl")
        acks = json.loads((self.workdir / "acks.json").read_text())
        return history, acks


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"the client process did not answer within {timeout:.0f}s")
    return process.stdout.readline()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ChaosCluster]:
    with Network([*COORDINATORS, *NODES, "client"]) as net:
        logs = tmp_path / "logs"
        coord_addrs = [f"{net.address(c)}:{COORD_PORT}" for c in COORDINATORS]
        peers = ",".join(f"{c}={a}" for c, a in zip(COORDINATORS, coord_addrs, strict=True))
        for c, address in zip(COORDINATORS, coord_addrs, strict=True):
            net.keychain(c, ["coordinator", "--id", c, "--listen", address, "--data-dir", str(tmp_path / c),
                             "--peers", peers, "--chain", "main", "--log-level", "info"],
                         log_path=logs / f"{c}.log")
        for n in NODES:
            address = f"{net.address(n)}:{NODE_PORT}"
            net.keychain(n, ["node", "--id", n, "--listen", address, "--advertise", address,
                             "--data-dir", str(tmp_path / n), "--chain", "main",
                             "--coordinator", ",".join(coord_addrs), "--log-level", "info"],
                         log_path=logs / f"{n}.log")
        with open(logs / "client.log", "ab") as client_log:
            client = net.popen(
                "client",
                [sys.executable, "-P", str(CLIENT_SCRIPT), "--coordinators", ",".join(coord_addrs),
                 "--chain", "main", "--history", str(tmp_path / "history.jsonl"),
                 "--acks", str(tmp_path / "acks.json"), "--seed", "11"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=client_log, text=True,
            )
        chaos = ChaosCluster(net, tmp_path, client)
        ready = json.loads(_readline(chaos.client, 45.0) or "{}")
        assert ready.get("ready"), f"the cluster never took a first write: {ready}\n{chaos.logs()}"
        yield chaos


def test_partitioned_head_is_replaced_and_no_acknowledged_write_is_lost(cluster: ChaosCluster):
    net = cluster.net
    time.sleep(1.5)  # load on a healthy chain first
    head = cluster.topology()["head"]
    assert head in NODES
    # The head keeps its link to the client but loses the other nodes and every coordinator:
    # its lease must lapse before the coordinators make its successor the head.
    net.split([head], [*COORDINATORS, *(n for n in NODES if n != head)])
    topo = cluster.wait_for("new head", lambda t: t["head"] not in ("", head))
    assert head not in [m for m, state in topo["members"] if state == "ACTIVE"]
    cluster.writes_flow()
    net.heal()
    cluster.wait_healthy()  # the old head rejoins after the tail and is promoted
    healed_at = time.monotonic()
    cluster.writes_flow()
    history, acks = cluster.finish()
    assert_sound(history, acks)
    assert any(op.op == "put" and op.status == "ok" and op.start > healed_at for op in history)


def test_coordinator_leader_partition_and_slow_node_keep_the_chain_serving(cluster: ChaosCluster):
    net = cluster.net
    time.sleep(1.0)
    leader = cluster.wait_for("coordinator leader", lambda t: t["leader"] in COORDINATORS)["leader"]
    net.isolate(leader)
    cluster.wait_for("new coordinator leader", lambda t: t["leader"] not in ("", leader))
    cluster.writes_flow()  # the chain keeps serving across the election
    net.heal()
    # A slow middle of the chain: every frame to and from it is delayed.
    middle = [m for m, state in cluster.topology()["members"] if state == "ACTIVE"][1]
    net.impair(middle, delay=0.03, jitter=0.01)
    cluster.writes_flow()
    net.heal()
    cluster.wait_healthy()
    healed_at = time.monotonic()
    cluster.writes_flow()
    history, acks = cluster.finish()
    assert_sound(history, acks)
    assert any(op.op == "put" and op.status == "ok" and op.start > healed_at for op in history)
