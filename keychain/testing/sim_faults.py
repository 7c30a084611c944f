"""The nemesis: which faults a simulation run injects, and when.

Between `start` and `stop` the nemesis picks a fault at random every so often (exponential gaps),
applies it, and schedules its end. At `stop` everything heals: partitions close, the network and
disks return to normal, and crashed processes restart (a node that left the chain stays gone), so
the run's last seconds show whether the cluster recovers and nothing acknowledged was lost.

Faults (the names `FAULTS` lists, each counted in `counts`):
- `partition`: the processes split into two random sides that cannot talk, both ways;
- `one-way`: one random group cannot send to another (replies still flow the other way);
- `isolate`: one process cut off from everyone;
- `crash`: a coordinator or chain node stops, losing what its disk had not synced, and restarts
  after a while;
- `slow-disk`: one process's syncs take 5-100 ms for a while;
- `stall`: a coordinator's disk hangs (the leader's, if one is up): a sync begun in the next while
  takes 1-7 s. Its driver stops (no ticks, no Raft messages: the others elect a new leader) while
  its request handlers still answer, as a stalled fsync does in the service;
- `lossy`: the network drops, duplicates and delays (so reorders) many more datagrams for a while;
- `join`: a new chain node starts and registers (it joins after the tail as syncing);
- `leave`: an operator removes an active node from the chain (a drain: the coordinator renews its
  lease no more and removes it once the lease has certainly lapsed) and, once told it left, stops
  it for good a moment later (a process takes a while to terminate); one at a time, keeping two
  active members, once every active member is in sync in the current epoch (its health gate).

Gray faults, where a process stays up but stops doing its part (`GRAY_FAULTS`; a run injects them
only when asked for by name, so that the seeds of the default set keep their schedules):
- `pause`: a coordinator or chain node stops in place for a while, as under SIGSTOP or a long
  pause of its runtime: it handles nothing and sends nothing, its streams stay open, and once
  resumed it handles what fell due meanwhile;
- `sync-stall`: a coordinator's or chain node's syncs hang for a while (a dying disk): a sync begun
  meanwhile ends when the stall does. The process keeps handling what needs no sync: a node's
  heartbeats go on;
- `one-way-out`: nothing one coordinator or chain node sends arrives anywhere; it still receives;
- `one-way-in`: nothing sent to one coordinator or chain node arrives; what it sends does;
- `unreachable`: nobody can connect to one chain node (its listening port is blocked): its
  predecessor's link, the clients' requests and other nodes' version queries do not reach it,
  while what it opens itself works: its link to its successor, its calls and heartbeats.
`keychain.testing.sim_liveness` injects one such fault, or a crash or an isolation, at a time to
check that the chain recovers within a bound.

Crashes can also strike at chosen moments (`SimConfig.crash_at`): e.g. right after a coordinator
grants a vote, where a member that forgot its vote would do the most harm.
Clock-rate drift is not an event: each process runs at its own rate for the whole run
(`Simulation` sets it), within keychain.timing.MAX_DRIFT of every other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keychain import timing
from keychain.coordinator.raft import Role
from keychain.coordinator.registry import MemberState as RegistryState
from keychain.testing.sim_coordinator import CoordReply, CoordRequest
from keychain.testing.sim_world import Process

if TYPE_CHECKING:
    from keychain.testing.sim_cluster import Simulation
    from keychain.testing.sim_coordinator import SimCoordinator
    from keychain.testing.sim_node import SimNode

FAULTS: tuple[str, ...] = ("partition", "one-way", "isolate", "crash", "slow-disk", "lossy", "join", "leave",
                           "stall")
GRAY_FAULTS: tuple[str, ...] = ("pause", "sync-stall", "one-way-out", "one-way-in", "unreachable")
ALL_FAULTS = FAULTS + GRAY_FAULTS


def isolation(victim: str, ids: list[str]) -> list[tuple[str, str]]:
    """The blocked paths that cut `victim` off from every other of `ids`, both ways."""
    return [(victim, o) for o in ids if o != victim] + [(o, victim) for o in ids if o != victim]


def silence(victim: str, ids: list[str]) -> list[tuple[str, str]]:
    """The blocked paths that stop whatever `victim` sends to the others of `ids`."""
    return [(victim, o) for o in ids if o != victim]


def deafness(victim: str, ids: list[str]) -> list[tuple[str, str]]:
    """The blocked paths that stop whatever the others of `ids` send to `victim`."""
    return [(o, victim) for o in ids if o != victim]


class Nemesis(Process):
    """Injects faults; a process only so that an operator's requests have a sender."""

    kind = "operator"

    def __init__(self, sim: Simulation, start: float, stop: float, kinds: tuple[str, ...], mean_gap: float) -> None:
        super().__init__(sim.world, "operator")
        unknown = sorted(set(kinds) - set(ALL_FAULTS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(ALL_FAULTS)}")
        self.sim = sim
        self.start_at = start
        self.stop_at = stop
        self.kinds = kinds
        self.mean_gap = mean_gap
        self.counts: dict[str, int] = dict.fromkeys(ALL_FAULTS, 0)
        self.partitioned = False
        self.base = (sim.net.drop, sim.net.duplicate, sim.net.spike, sim.net.spike_delay)
        self.disk = {p.id: p.disk_latency for p in sim.processes()}
        self._ids = 0
        self.leaving: dict[int, str] = {}  # request id -> the node being removed
        # How long the operator waits for a drain's answer: the coordinator's bound, and the trip.
        self.drain_wait = sim.config.supervisor().removal_wait + 2 * timing.RPC_TIMEOUT
        self.up = True
        self.incarnation = 1

    def begin(self) -> None:
        if self.kinds:
            self.world.at(self.start_at + self.world.rng.expovariate(1 / self.mean_gap), self._next)
        self.world.at(self.stop_at, self.heal_all)

    def _next(self) -> None:
        world = self.world
        if world.now >= self.stop_at:
            return
        kind = world.rng.choice(self.kinds)
        if getattr(self, "_" + kind.replace("-", "_"))():
            self.counts[kind] += kind != "crash"  # crash() counts itself
            world.note("fault", kind)
        world.after(world.rng.expovariate(1 / self.mean_gap), self._next)

    def _until(self, low: float, high: float) -> float:
        return self.world.rng.uniform(low, high)

    # ---- partitions ----

    def _cut(self, pairs: list[tuple[str, str]], duration: float) -> bool:
        if self.partitioned or not pairs:
            return False
        self.partitioned = True
        net = self.sim.net
        for a, b in pairs:
            net.block(a, b)
        net.cut_streams()
        self.world.after(duration, self._heal_partition)
        return True

    def _heal_partition(self) -> None:
        self.partitioned = False
        self.sim.net.heal()

    def _ids_all(self) -> list[str]:
        return [p.id for p in self.sim.processes()]

    def _partition(self) -> bool:
        ids = self._ids_all()
        self.world.rng.shuffle(ids)
        k = self.world.rng.randrange(1, len(ids))
        left, right = ids[:k], ids[k:]
        pairs = [(a, b) for a in left for b in right] + [(b, a) for a in left for b in right]
        return self._cut(pairs, self._until(0.2, 1.5))

    def _one_way(self) -> bool:
        ids = self._ids_all()
        self.world.rng.shuffle(ids)
        k = self.world.rng.randrange(1, len(ids))
        return self._cut([(a, b) for a in ids[:k] for b in ids[k:]], self._until(0.2, 1.5))

    def _isolate(self) -> bool:
        ids = self._ids_all()
        victim = self.world.rng.choice(ids)
        others = [i for i in ids if i != victim]
        return self._cut([(victim, o) for o in others] + [(o, victim) for o in others], self._until(0.2, 2.0))

    def _victim(self, nodes_only: bool = False) -> SimCoordinator | SimNode | None:
        """A coordinator or chain node that is up, not paused and not leaving, at random."""
        sim = self.sim
        kinds = (sim.nodes,) if nodes_only else (sim.coordinators, sim.nodes)
        up = [p for group in kinds for p in group.values() if p.up and not p.paused and not p.retired]
        return self.world.rng.choice(up) if up else None

    def _one_way_out(self) -> bool:
        victim = self._victim()
        return victim is not None and self._cut(silence(victim.id, self._ids_all()), self._until(0.2, 2.0))

    def _one_way_in(self) -> bool:
        victim = self._victim()
        return victim is not None and self._cut(deafness(victim.id, self._ids_all()), self._until(0.2, 2.0))

    def _unreachable(self) -> bool:
        victim = self._victim(nodes_only=True)
        if victim is None or self.partitioned:
            return False
        self.partitioned = True
        self.close_port(victim)
        self.world.after(self._until(0.2, 2.0), self._heal_partition)
        return True

    def close_port(self, victim: Process) -> None:
        """Nobody can connect to `victim` from now on (see sim_world.Network.closed)."""
        net = self.sim.net
        net.closed.add(victim.id)
        net.cut_streams()

    # ---- processes ----

    def _pause(self) -> bool:
        victim = self._victim()
        if victim is None:
            return False
        self.pause(victim, self._until(0.2, 2.0))
        return True

    def pause(self, victim: Process, duration: float) -> None:
        """Stop `victim` in place for `duration` seconds."""
        victim.pause()
        self.world.note("pause", victim.id)
        self.world.after(duration, self._resume, victim)

    def _resume(self, victim: Process) -> None:
        if victim.paused:
            victim.resume()
            self.world.note("resume", victim.id)

    def _sync_stall(self) -> bool:
        victim = self._victim()
        if victim is None:
            return False
        self.stall_syncs(victim, self._until(0.2, 2.0))
        return True

    def stall_syncs(self, victim: Process, duration: float) -> None:
        """Hold every sync `victim` begins in the next `duration` seconds until they have passed."""
        victim.stalled_until = max(victim.stalled_until, self.world.now + duration)
        self.world.note("sync-stall", victim.id, round(duration, 3))

    def _crash(self) -> bool:
        sim = self.sim
        candidates = [p for p in (*sim.coordinators.values(), *sim.nodes.values())
                      if p.up and not p.retired and p.kind in sim.config.crash]
        if not candidates:
            return False
        self.crash(self.world.rng.choice(candidates))
        return True

    def crash_now(self, moment: str) -> bool:
        """Whether to crash the process that just passed `moment` (see SimConfig.crash_at)."""
        p = self.sim.config.crash_at.get(moment, 0.0)
        return bool(p) and self.start_at <= self.world.now < self.stop_at and self.world.rng.random() < p

    def crash(self, victim: SimCoordinator | SimNode) -> None:
        if not victim.up:
            return
        if victim.paused:  # a stopped process can be killed: what it held dies with it
            victim.resume()
        victim.crash()
        self.counts["crash"] += 1
        self.world.note("crash", victim.id)
        self.world.after(self._until(*self.sim.config.restart_after), self._restart, victim)

    def _restart(self, p: Process) -> None:
        if not p.up and not p.retired and not self.world.stopped:
            p.start()
            self.world.note("restart", p.id)

    def _slow_disk(self) -> bool:
        p = self.world.rng.choice(list(self.sim.processes()))
        p.disk_latency = self._until(0.005, 0.1)
        self.world.after(self._until(0.3, 2.0), self._disk_back, p)
        return True

    def _stall(self) -> bool:
        coordinators = list(self.sim.coordinators.values())
        leaders = [c for c in coordinators if c.up and c.role is Role.LEADER]
        p = self.world.rng.choice(leaders or coordinators)
        p.disk_latency = self._until(2.0, 5.0)
        self.world.after(self._until(0.2, 1.0), self._disk_back, p)
        return True

    def _disk_back(self, p: Process) -> None:
        p.disk_latency = self.disk[p.id]

    def _lossy(self) -> bool:
        net = self.sim.net
        net.drop = self._until(0.02, 0.3)
        net.duplicate = self._until(0.0, 0.2)
        net.spike = self._until(0.1, 0.5)
        net.spike_delay = self._until(0.01, 0.3)
        self.world.after(self._until(0.3, 2.0), self._network_back)
        return True

    def _network_back(self) -> None:
        net = self.sim.net
        net.drop, net.duplicate, net.spike, net.spike_delay = self.base

    # ---- membership ----

    def _join(self) -> bool:
        spare = [n for n in self.sim.nodes.values() if not n.up and n.incarnation == 0]
        if not spare:
            return False
        spare[0].start()
        self.world.note("join", spare[0].id)
        return True

    def _leave(self) -> bool:
        state = self.sim.latest_chain()
        if state is None:
            return False
        active = [m.id for m in state.members if m.state is RegistryState.ACTIVE]
        if len(active) < 3 or self.leaving:
            return False
        # The operator's health gate: one removal at a time, never below two active members, and
        # every active member serving in the current epoch, level with the chain. Without it a
        # removal right after a promotion can drop the only copy of writes the old tail
        # acknowledged before it learned of the promotion.
        for node_id in active:
            node = self.sim.nodes[node_id]
            if not node.up or node.core.epoch != state.epoch or not node.core.in_sync:
                return False
        victim = self.world.rng.choice(active)
        coords = [c for c in self.sim.coordinators.values() if c.up]
        coord = self.world.rng.choice(coords) if coords else None
        if coord is None:
            return False
        self._ids += 1
        self.sim.net.send(self, coord, "coord-req", coord.on_request, self, self.incarnation, self._ids,
                          CoordRequest("remove", self.sim.chain, victim))
        self.leaving[self._ids] = victim
        self.timer(self.drain_wait, self.leaving.pop, self._ids, None)  # no answer: give up
        return True

    def on_coord_reply(self, rid: int, reply: CoordReply) -> None:
        victim = self.sim.nodes.get(self.leaving.pop(rid, ""))
        self.leaving.clear()  # one answer ends the removal in flight, whatever it was
        if victim is None or reply.error or reply.chain is None or reply.chain.member(victim.id) is not None:
            return
        victim.retired = True
        self.world.note("left", victim.id)
        self.world.after(self._until(0.0, 0.5), self._stop, victim)

    def _stop(self, victim: SimNode) -> None:
        if victim.up:
            victim.crash()

    # ---- the end ----

    def heal_all(self) -> None:
        net = self.sim.net
        net.heal()
        self.partitioned = False
        self._network_back()
        for p in self.sim.processes():
            p.disk_latency = self.disk[p.id]
            p.stalled_until = 0.0
            self._resume(p)
        for p in (*self.sim.coordinators.values(), *self.sim.nodes.values()):
            if not p.up and p.incarnation > 0 and not p.retired:
                p.start()
                self.world.note("restart", p.id)
