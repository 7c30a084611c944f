"""One simulation run: 3 coordinators, 3-5 chain nodes and a few clients wired over one simulated
world, a nemesis injecting faults, and every property checked.

`run_seed(seed, config)` builds the cluster from the seed (how many nodes start, their core options,
clock rates, disks), runs it for `config.duration` virtual seconds (faults until the last
`config.heal` seconds, client operations until shortly before the end), or, in liveness mode
(`config.liveness`), for the fixed length of one single fault and its healing, checked for
liveness by keychain.testing.sim_liveness; it checks the invariants
continuously (see sim_invariants), and at the end checks that the tail holds every acknowledged
write and that the client history is linearizable. The first violation stops the run; the result
carries it, the trace's hash (equal seeds give equal hashes) and the trace's last events.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from keychain import timing
from keychain.coordinator.raft import RaftCore
from keychain.coordinator.registry import ChainState
from keychain.coordinator.supervision import Supervisor
from keychain.node.core import ChainCore, CoreOptions, Role
from keychain.testing.checker import check
from keychain.testing.history import Operation, Recorder
from keychain.testing.sim_client import SimClient
from keychain.testing.sim_coordinator import SimCoordinator
from keychain.testing.sim_faults import ALL_FAULTS, FAULTS, Nemesis
from keychain.testing.sim_invariants import Invariants, Violation
from keychain.testing.sim_liveness import NODE_ONLY, NODE_ROLES, ROLES, RUN_LENGTH, SINGLE_FAULTS, SingleFault
from keychain.testing.sim_node import SimNode
from keychain.testing.sim_watcher import SimWatcher
from keychain.testing.sim_world import Network, Process, World

CHAIN = "main"
MAX_NODES = 5
CHECK_EVERY = 0.05  # seconds between checks of the chain prefix property
HISTORY_MAX_STEPS = 200_000
MULTIKEY = 0.2  # SimConfig.multikey of runs with range reads and transactions  # the checker's budget per key; beyond it the verdict is "undecided"


@dataclass(frozen=True)
class SimConfig:
    duration: float = 6.0  # virtual seconds
    heal: float = 2.0  # the last seconds are free of faults
    keys: int = 3
    clients: int = 3
    # Clients that watch (keychain.testing.sim_watcher). None by default here, so that the seeds the
    # regression tests pin keep their schedules (a watcher's messages draw from the run's one random
    # source); the simulator's command line and the watch tests run them.
    watchers: int = 0
    # The share of client operations that are range reads and transactions. 0 keeps the schedules of
    # single-key runs (and the seeds pinned against them) as they were; MULTIKEY is the usual share.
    multikey: float = 0.0
    # Seqs superseded versions are kept for range snapshots (CoreOptions.retain_versions); None keeps the
    # node's default, so long that no run reaches it: set it low to have deletes garbage-collected
    # (a tombstone is collected only below this horizon, see keychain.node.core).
    retain_versions: int | None = None
    faults: tuple[str, ...] = FAULTS
    fault_gap: float = 0.35  # mean seconds between two faults
    crash: tuple[str, ...] = ("coordinator", "node")  # which kinds of process a crash may hit
    restart_after: tuple[float, float] = (0.05, 1.5)  # a crashed process restarts this long after
    latency: tuple[float, float] = (0.0002, 0.002)  # one-way network latency, uniform
    # Crashes at chosen moments, as a probability per occurrence while faults are on:
    # "vote" = a coordinator right after it granted a vote.
    crash_at: dict[str, float] = field(default_factory=dict)
    chain_core: type[ChainCore] = ChainCore
    raft_core: type[RaftCore] = RaftCore
    node_shell: type[SimNode] = SimNode  # how a node drives its core (tests substitute broken ones)
    supervisor: type[Supervisor] = Supervisor  # the coordinators' supervision core (tests substitute broken ones)
    # Liveness mode: no random faults (`faults`, `duration` and `heal` do not apply); ONE fault of one
    # of these kinds strikes a process of one of `roles` (see sim_liveness).
    liveness: tuple[str, ...] = ()
    roles: tuple[str, ...] = ROLES

    def __post_init__(self) -> None:
        if self.duration <= 1.0 or not 0 <= self.heal < self.duration:
            raise ValueError(f"need duration > 1 s and 0 <= heal < duration, got {self.duration}, {self.heal}")
        if self.keys < 1 or self.clients < 1 or self.watchers < 0 or self.fault_gap <= 0:
            raise ValueError("keys, clients and fault_gap must be positive")
        if not 0 <= self.multikey < 1 or (self.multikey and self.keys < 2):
            raise ValueError("multikey is a share below 1, and needs at least 2 keys")
        unknown = sorted(set(self.faults) - set(ALL_FAULTS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(ALL_FAULTS)}")
        unknown = sorted(set(self.liveness) - set(SINGLE_FAULTS)) + sorted(set(self.roles) - set(ROLES))
        if unknown or not self.roles:
            raise ValueError(f"unknown single fault kind(s) or role(s) {', '.join(unknown) or '(no roles)'}; known: "
                             f"{', '.join(SINGLE_FAULTS)} and {', '.join(ROLES)}")
        if self.liveness and set(self.liveness) <= NODE_ONLY and not set(self.roles) & set(NODE_ROLES):
            raise ValueError(f"fault kind(s) {', '.join(self.liveness)} strike chain nodes only; give a node role")
        for name in ("restart_after", "latency"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range of positive seconds, got {(low, high)}")


@dataclass
class RunResult:
    seed: int
    violation: Violation | None
    trace_hash: str
    trace_tail: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    history: list[Operation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.violation is None


class Simulation:
    def __init__(self, seed: int, config: SimConfig) -> None:
        self.config = config
        self.world = world = World(seed)
        rng = world.rng
        self.net = Network(world)
        self.net.latency = config.latency
        self.net.drop = rng.choice((0.0, 0.01, 0.03))
        self.net.duplicate = rng.choice((0.0, 0.01, 0.03))
        self.inv = Invariants()
        self.recorder = Recorder()
        self.chain = CHAIN
        self.duration = RUN_LENGTH if config.liveness else config.duration
        self.ops_until = self.duration - 0.5
        self.acked_at: list[float] = []  # when each acknowledged write was acknowledged, ascending
        self.settled = False  # the end-of-run durability check found a tail to look at
        self.coordinator_ids = ("c1", "c2", "c3")
        self.coordinators = {
            cid: SimCoordinator(self, cid, self.coordinator_ids, config.raft_core, rng.choice((5, 20, 1000)))
            for cid in self.coordinator_ids
        }
        self.options = CoreOptions(
            max_batch_entries=rng.choice((1, 4, 64)),
            max_inflight_entries=rng.choice((2, 16, 1024)),
            retain_entries=rng.choice((2, 20, 10_000)),
            transfer_chunk_keys=rng.choice((1, 2, 256)),
        )
        if config.retain_versions is not None:
            self.options = replace(self.options, retain_versions=config.retain_versions)
        self.initial_nodes = rng.randint(3, MAX_NODES)
        self.nodes = {f"n{i}": config.node_shell(self, f"n{i}", config.chain_core, self.options)
                      for i in range(1, MAX_NODES + 1)}
        self.clients = [SimClient(self, f"cl{i}") for i in range(1, config.clients + 1)]
        self.watchers = [SimWatcher(self, f"w{i}") for i in range(1, config.watchers + 1)]
        # Clock rates: any two differ by at most a factor 1 + MAX_DRIFT.
        half = math.log1p(timing.MAX_DRIFT) / 2
        for p in self.processes():
            p.rate = math.exp(rng.uniform(-half, half))
            p.disk_latency = rng.uniform(0.0002, 0.002)
        self.nemesis = Nemesis(self, rng.uniform(0.3, 1.5), config.duration - config.heal,
                               () if config.liveness else config.faults, config.fault_gap)
        self.single_fault = SingleFault(self, config.liveness, config.roles) if config.liveness else None

    def processes(self) -> Iterator[Process]:
        yield from self.coordinators.values()
        yield from self.nodes.values()
        yield from self.clients
        yield from self.watchers

    def lease_holders(self) -> Iterator[tuple[str, int]]:
        """(id, epoch) of every chain node that is up and holds a valid lease now, by its own clock."""
        for n in self.nodes.values():
            if n.up and n.core.config is not None and n.core.lease_valid(n.local()):
                yield n.id, n.core.epoch

    def latest_chain(self) -> ChainState | None:
        """The newest configuration any live coordinator has applied."""
        best: ChainState | None = None
        for c in self.coordinators.values():
            state = c.registry.get(self.chain) if c.up else None
            if state is not None and (best is None or state.epoch > best.epoch):
                best = state
        return best

    # ---- running ----

    def run(self) -> RunResult:
        world = self.world
        wall = time.perf_counter()
        violation: Violation | None = None
        try:
            for c in self.coordinators.values():
                c.start()
            for node in list(self.nodes.values())[: self.initial_nodes]:
                world.at(world.rng.uniform(0, 0.2), node.start)
            for client in [*self.clients, *self.watchers]:
                client.start()
            if self.single_fault is not None:
                self.single_fault.begin()
            else:
                self.nemesis.begin()
            world.at(CHECK_EVERY, self._check_prefix)
            world.run(self.duration)
            self._check_end()
        except Violation as v:
            violation = v
            world.note("violation", v.prop)
        except Exception as exc:  # a core (or the simulator) raised: report it like a broken property
            where = traceback.extract_tb(exc.__traceback__)[-1]
            violation = Violation("no-exception", f"{exc!r} at {where.filename.rsplit('/', 1)[-1]}:{where.lineno} "
                                                  f"in {where.name}")
            violation.__cause__ = exc
            world.note("exception", type(exc).__name__)
        history = self.recorder.history()
        stats = self._stats(history, time.perf_counter() - wall)
        if violation is None:
            t = time.perf_counter()
            result = check(history, max_steps=HISTORY_MAX_STEPS)
            stats["check_seconds"] = round(time.perf_counter() - t, 3)
            stats["history_verdict"] = result.verdict
            if not result.ok and not result.exhausted:
                window = "; ".join(op.describe() for op in result.window)
                violation = Violation("linearizable", f"key {result.key}: {result.message} [{window}]")
        return RunResult(world.seed, violation, world.trace_hash(), self._tail(40), stats, history)

    def _check_prefix(self) -> None:
        """In each node's epoch, an in-sync active node's log is a prefix of its predecessor's."""
        self.world.after(CHECK_EVERY, self._check_prefix)
        for node in self.nodes.values():
            core = node.core if node.up else None
            if core is None or core.pred is None or not core.in_sync or core.role in (Role.SYNCING, Role.NONE):
                continue
            pred = self.nodes[core.pred]
            pc = pred.core if pred.up else None
            if pc is None or pc.epoch != core.epoch or not pc.in_sync or pc.role in (Role.SYNCING, Role.NONE):
                continue
            self.inv.prefix(pred.id, pred.store, node.id, node.store)

    def _check_end(self) -> None:
        """After the quiet end of the run: the tail of the newest configuration holds every acked write."""
        live = [n for n in self.nodes.values() if n.up and n.core.config is not None]
        if not live:
            return
        epoch = max(n.core.epoch for n in live)
        for n in live:
            core = n.core
            if core.epoch == epoch and core.is_tail and core.in_sync and not n.busy and not core.has_ready():
                self.inv.tail_holds_acked(n.id, n.store)
                self.settled = True
                return

    # ---- reporting ----

    def _stats(self, history: list[Operation], wall: float) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for op in history:
            statuses[op.status] = statuses.get(op.status, 0) + 1
        state = self.latest_chain()
        return {
            "virtual_seconds": round(self.world.now, 3),
            "wall_seconds": round(wall, 3),
            "events": self.world.events,
            "messages": self.net.sent,
            "dropped": self.net.dropped,
            "duplicated": self.net.duplicated,
            "operations": len(history),
            "statuses": statuses,
            "acked_writes": self.inv.acks,
            "reads": self.inv.reads,
            "faults": {k: v for k, v in self.nemesis.counts.items() if v},
            "epoch": state.epoch if state else 0,
            "leaders": len(self.inv.leaders),
            "chain_seqs": len(self.inv.committed),
            "initial_nodes": self.initial_nodes,
            "settled": self.settled,
            "watches": sum(1 for op in history if op.op == "watch"),
            "watch_events": sum(len(op.events or ()) for op in history if op.op == "watch"),
            "watch_resumes": sum(len(w.resumes) for x in self.watchers for w in x.finished),
            **(self.single_fault.stats() if self.single_fault is not None else {}),
            # the highest point through which a live node garbage-collected tombstones
            "collected_seq": max((n.core.collected_seq for n in self.nodes.values() if n.up and n.core), default=0),
        }

    def _tail(self, n: int) -> list[str]:
        lines = []
        for item in self.world.trace[-n:]:
            t, *rest = item
            lines.append(f"{t:10.6f} " + " ".join(str(x) for x in rest))
        lines.append("nodes: " + ", ".join(
            f"{n.id}[{'up' if n.up else 'down'} e{n.core.epoch} {n.core.role.value} last={n.core.last_seq} "
            f"committed={n.core.committed_seq}{'' if n.core.in_sync else ' lagging'}]"
            for n in self.nodes.values() if n.incarnation > 0))
        return lines


def run_seed(seed: int, config: SimConfig | None = None) -> RunResult:
    return Simulation(seed, config or SimConfig()).run()


def first_failure(config: SimConfig, seeds: Iterable[int]) -> RunResult | None:
    """The first of `seeds` whose run fails under `config`, or None if all pass (a bounded search:
    tests use it to show a deliberately broken core is still caught, whatever the schedules)."""
    for seed in seeds:
        result = run_seed(seed, config)
        if not result.ok:
            return result
    return None
