"""Gray failures between real processes: a cluster of 3 coordinators and 3 chain nodes, each in its own
network namespace, a client namespace driving load, and one fault at a time on one member picked by
its role, with the write gaps it caused measured from the client's history.

Faults (`FAULT_KINDS`):
- crash: kill -9, restarted from its data directory when the fault heals;
- pause: SIGSTOP, SIGCONT when it heals (a GC pause, a starved CPU);
- one-way-in / one-way-out: every packet to / from the member's listening port dropped, its own
  outgoing connections (heartbeats to the coordinators, its link to its successor) untouched;
- stalled-syncs: the node's fsyncs block (the test-only KEYCHAIN_TEST_STALL_SYNC trigger file),
  chain nodes only.

With `via_proxy`, a real `keychain proxy` runs in the client namespace and the load goes through
its gRPC KV API, as an application's would: then the proxy's own view (its reports of a node that
leaves its requests and its probe unanswered) takes part, as on a `keychain up` cluster.

Shared by the chaos tests (tests/chaos/test_chaos_gray_failures.py) and the benchmark
(bench/gray_failures.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from keychain.node.fault_injection import STALL_SYNC_ENV

from keychain.testing.checker import check
from keychain.testing.history import Operation, read_history
from keychain.testing.netns import Network
from keychain.testing.write_gaps import WriteGaps, write_gaps

COORDINATORS = ["coord-1", "coord-2", "coord-3"]
NODES = ["node-1", "node-2", "node-3"]
COORD_PORT, NODE_PORT = 7001, 7101
PROXY = "proxy"  # runs in the client namespace
PROXY_HTTP, PROXY_GRPC = "127.0.0.1:7180", "127.0.0.1:7181"
CLIENT_SCRIPT = Path(__file__).resolve().parent / "chaos_client.py"
FAULT_KINDS = ("crash", "pause", "one-way-in", "one-way-out", "stalled-syncs")
ROLES = ("head", "middle", "tail", "coordinator-leader")
RECOVERY_TIMEOUT = 30.0  # seconds for the chain to be whole again after a heal
SETTLE = 1.0  # seconds after the chain is whole again that still count as "after the heal"


def supported(kind: str, role: str) -> bool:
    """Whether the fault can be injected into a member of that role (syncs stall on chain nodes only)."""
    return not (kind == "stalled-syncs" and role == "coordinator-leader")


class Load:
    """One run of the chaos client in the client namespace: load, topology queries, its history."""

    def __init__(self, net: Network, workdir: Path, coordinators: list[str], name: str, seed: int,
                 proxy: str | None = None) -> None:
        self.workdir = workdir
        self.history_path = workdir / f"{name}-history.jsonl"
        self.acks_path = workdir / f"{name}-acks.json"
        with open(workdir / "logs" / f"{name}-client.log", "ab") as log:
            self.process = net.popen(
                "client",
                [sys.executable, "-P", str(CLIENT_SCRIPT), "--coordinators", ",".join(coordinators),
                 "--chain", "main", "--history", str(self.history_path), "--acks", str(self.acks_path),
                 "--seed", str(seed), "--max-ops", "100000", "--key-prefix", f"{name}-",
                 *(["--proxy", proxy] if proxy else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            )
        ready = json.loads(self._readline(45.0) or "{}")
        if not ready.get("ready"):
            raise AssertionError(f"the chain never took a first write: {ready}")

    def ask(self, command: str, timeout: float = 15.0) -> dict:
        """Send one command to the client process and read its one-line JSON answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self._readline(timeout)
        if not line:
            raise AssertionError(f"the client process died answering {command!r}")
        return json.loads(line)

    def topology(self) -> dict:
        return self.ask("topology")

    def finish(self) -> tuple[list[Operation], dict]:
        """Stop the load; the history and the acknowledged writes with the final reads."""
        self.ask("stop", timeout=60.0)
        return read_history(self.history_path), json.loads(self.acks_path.read_text())

    def _readline(self, timeout: float) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"the client process did not answer within {timeout:.0f}s")
        return self.process.stdout.readline()


@dataclass
class Measurement:
    kind: str
    role: str
    victim: str
    gaps: WriteGaps
    history: list[Operation]
    acks: dict
    recovered_in: float  # seconds from the heal until the chain was whole again


def whole(topo: dict) -> bool:
    """Three active members, a head and a coordinator leader: the cluster has recovered."""
    return bool(topo["head"] and topo["leader"]) and sum(state == "ACTIVE" for _, state in topo["members"]) == 3


def role_of(topo: dict, role: str) -> str:
    """The member playing `role` now."""
    if role == "coordinator-leader":
        return topo["leader"]
    active = [m for m, state in topo["members"] if state == "ACTIVE"]
    return active[("head", "middle", "tail").index(role)]


@dataclass
class GrayCluster:
    net: Network
    workdir: Path
    commands: dict[str, list[str]] = field(default_factory=dict)  # how each member was started
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    loads: int = 0
    via_proxy: bool = False

    @property
    def coordinator_addresses(self) -> list[str]:
        return [f"{self.net.address(c)}:{COORD_PORT}" for c in COORDINATORS]

    def stall_trigger(self, node: str) -> Path:
        return self.workdir / f"stall-{node}"

    def start_members(self) -> None:
        coords = self.coordinator_addresses
        peers = ",".join(f"{c}={a}" for c, a in zip(COORDINATORS, coords, strict=True))
        for c, address in zip(COORDINATORS, coords, strict=True):
            self.commands[c] = ["coordinator", "--id", c, "--listen", address, "--data-dir",
                                str(self.workdir / c), "--peers", peers, "--chain", "main", "--log-level", "info"]
        for n in NODES:
            address = f"{self.net.address(n)}:{NODE_PORT}"
            self.commands[n] = ["node", "--id", n, "--listen", address, "--advertise", address, "--data-dir",
                                str(self.workdir / n), "--chain", "main", "--coordinator", ",".join(coords),
                                "--log-level", "info"]
        if self.via_proxy:
            self.commands[PROXY] = ["proxy", "--listen", PROXY_HTTP, "--grpc", PROXY_GRPC, "--coordinator",
                                    ",".join(coords), "--chain", "main", "--log-level", "info"]
        for name in self.commands:
            self.start(name)

    def start(self, name: str) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {STALL_SYNC_ENV: str(self.stall_trigger(name))} if name in NODES else {}
        with open(log, "ab") as out:
            self.processes[name] = self.net.popen(
                "client" if name == PROXY else name, [sys.executable, "-P", "-m", "keychain", *self.commands[name]], stdout=out, env=env)

    def load(self, seed: int = 11) -> Load:
        self.loads += 1
        return Load(self.net, self.workdir, self.coordinator_addresses, f"load-{self.loads}", seed,
                    proxy=PROXY_GRPC if self.via_proxy else None)

    # -- faults --

    def inject(self, kind: str, victim: str) -> None:
        port = COORD_PORT if victim in COORDINATORS else NODE_PORT
        if kind == "crash":
            self.processes[victim].kill()
            self.processes[victim].wait(10)
        elif kind == "pause":
            os.kill(self.processes[victim].pid, signal.SIGSTOP)
            self.paused.add(victim)
        elif kind in ("one-way-in", "one-way-out"):
            self.net.drop_port(victim, port, "in" if kind == "one-way-in" else "out")
        elif kind == "stalled-syncs":
            if victim not in NODES:
                raise ValueError("syncs stall on chain nodes only")
            self.stall_trigger(victim).touch()
        else:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")

    def heal(self, kind: str, victim: str) -> None:
        if kind == "crash":
            self.start(victim)
        elif kind == "pause":
            os.kill(self.processes[victim].pid, signal.SIGCONT)
            self.paused.discard(victim)
        elif kind in ("one-way-in", "one-way-out"):
            self.net.heal_partitions()
        elif kind == "stalled-syncs":
            self.stall_trigger(victim).unlink(missing_ok=True)

    def heal_everything(self) -> None:
        """Undo every fault (a test that failed midway must not leave a stopped process or a stall)."""
        for name in list(self.paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.processes[name].pid, signal.SIGCONT)
        self.paused.clear()
        for node in NODES:
            self.stall_trigger(node).unlink(missing_ok=True)
        self.net.heal_partitions()

    # -- one measured fault --

    def measure(self, kind: str, role: str, *, duration: float, warmup: float = 1.0, seed: int = 11,
                recovery_timeout: float = RECOVERY_TIMEOUT) -> Measurement:
        """Under a fresh load: wait until the cluster is whole, inject `kind` into the member in `role`
        for `duration` seconds, heal it, wait until the cluster is whole again, and measure."""
        load = self.load(seed)
        try:
            wait_for(load, "a whole cluster before the fault", whole, recovery_timeout)
            time.sleep(warmup)
            victim = role_of(load.topology(), role)
            fault = time.monotonic()
            self.inject(kind, victim)
            try:
                time.sleep(duration)
            finally:
                self.heal(kind, victim)
            healed = time.monotonic()
            wait_for(load, "a whole cluster after the heal", whole, recovery_timeout)
            recovered_in = time.monotonic() - healed
            time.sleep(SETTLE)
            settled = healed + recovered_in + SETTLE
        except BaseException:
            self.heal_everything()
            with contextlib.suppress(Exception):
                load.finish()
            raise
        history, acks = load.finish()
        return Measurement(kind, role, victim, write_gaps(history, fault, healed, settled), history, acks,
                           recovered_in)

    def logs(self, lines: int = 15) -> str:
        out = []
        for path in sorted((self.workdir / "logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)


def assert_sound(history: list[Operation], acks: dict) -> None:
    """The history is linearizable and every acknowledged write survives in the final reads."""
    assert sum(op.op == "put" and op.status == "ok" for op in history) >= 20, "too little load got through"
    result = check(history)
    assert result.ok, f"{result.message}\n" + "\n".join(op.describe() for op in result.window)
    final = acks["final_reads"]
    assert final and all(r["version"] is not None for r in final), f"final reads failed: {final}"
    for ack in acks["acks"]:
        for read in final:
            if read["key"] == ack["key"] and read["start"] > ack["end"]:
                assert read["version"] >= ack["version"], (
                    f"acknowledged write lost: {ack} but {read['member']} later read {read}")


def wait_for(load: Load, what: str, predicate: Callable[[dict], bool], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    topo = load.topology()
    while not predicate(topo):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s; last topology {topo}")
        time.sleep(0.2)
        topo = load.topology()
    return topo


@contextlib.contextmanager
def gray_cluster(workdir: Path, *, via_proxy: bool = False) -> Iterator[GrayCluster]:
    """A running cluster in fresh namespaces; every fault undone and everything removed on exit."""
    with Network([*COORDINATORS, *NODES, "client"]) as net:
        cluster = GrayCluster(net, workdir, via_proxy=via_proxy)
        try:
            cluster.start_members()
            yield cluster
        finally:
            cluster.heal_everything()
