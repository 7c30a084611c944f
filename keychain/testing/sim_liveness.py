"""Liveness under a single fault: the chain keeps acknowledging writes, and heals back to full length.

In this mode (`SimConfig(liveness=KINDS)`) a run injects no random faults. Once the chain has
formed, `SingleFault` strikes ONE process, picked by its role, with ONE fault of the kinds asked
for, lets it last a while, heals it, and checks two properties while the clients keep up a steady
write load:

- `liveness-writes-resume`: from the moment the fault begins until the chain must be whole again,
  acknowledged writes never stop for longer than `writes_resume(kind, role)`;
- `liveness-full-length`: the chain has every node active before the fault and again within
  `full_length(kind, role)` after the fault healed.

Both hold only where progress is possible: a majority of coordinators and at least one chain node
that can all reach each other. A single fault of one process always leaves that (three
coordinators, at least three nodes), so every run of this mode must meet both.

Kinds (`SINGLE_FAULTS`): `crash` (restarted when the fault heals), `pause` (stopped in place, as by
SIGSTOP), `isolate` (cut off both ways), `one-way-out` (nothing it sends arrives), `one-way-in`
(nothing sent to it arrives), `unreachable` (nobody can connect to a node, whose own connections
work: its listening port is blocked) and `sync-stall` (its syncs hang). Roles (`ROLES`): the
chain's `head`, a `middle` node, its `tail`, the coordinators' `leader`, a `follower`.

The bounds come from keychain.timing and the simulated shells' own figures. First, how long the
coordinator leader may take to remove the victim (its *detection*), by the kind of fault:

    silent   = HEARTBEAT_INTERVAL + REMOVAL_AFTER * (1 + MAX_DRIFT) + TICK = 0.1 + 1.51 * 1.05 + 0.05
             = 1.736 s                        (crash, pause, isolate, one-way-out; any coordinator fault)
        the node stopped heartbeating: the leader last heard it at most one heartbeat before the
        fault and removes it once silent for REMOVAL_AFTER of its own clock (which may run
        MAX_DRIFT slow), at its next tick. A coordinator fault should not stop writes at all (an
        election takes well under a lease); it gets the same bound;
    gray     = 2 * (LINK_TIMEOUT + 3 * HEARTBEAT_INTERVAL + PROPOSAL_COMMIT) = 2 * (0.5 + 0.3 + 0.05)
             = 1.7 s                          (unreachable)
        the node heartbeats but its links fail: a dead link is reported once it lasted
        LINK_TIMEOUT, with the next heartbeat; the suspect's lease is revoked by the answer to the
        one after and surrendered by the next; the removal commits. A fault that the culprit's
        second link reveals takes two such rounds;
    unheard  = LINK_TIMEOUT + silent = 2.236 s (one-way-in)
        the suspect cannot hear the revocation, but hears no grant either: its lease lapses a lease
        after the fault at most, and from then on every heartbeat surrenders it, so the leader
        removes it about LEASE after the fault (the simulator: 1.7 s of write gap for a middle or a
        tail); the bound keeps the older argument's room (the leader stops renewing once the dead
        links are reported and removes the node once that lease has certainly lapsed);
    stalled  = SYNC_STALL + 3 * HEARTBEAT_INTERVAL + PROPOSAL_COMMIT = SYNC_STALL + 0.35 s (sync-stall)
        the node says it is stalled once a sync has waited SYNC_STALL, then as for `gray`.

Then, for a fault of detection D:

    reconfigure        = PROPOSAL_COMMIT + HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT = 0.05 + 0.1 + 0.3 = 0.45 s
        the removal commits (one Raft round and a sync), and each survivor learns the new epoch
        from its next heartbeat's answer, one coordinator later if the one it asked is the victim;
    client             = ATTEMPT_TIMEOUT + RETRY_BACKOFF.cap = 0.5 + 0.25 = 0.75 s
        a write sent to the old head just before the change is given up after one attempt's
        timeout and sent again, to the new head, after at most the proxy's longest backoff;
    writes_resume      = D + reconfigure + client      (2.936 s for a crash, 3.436 s for one-way-in)

    rejoin             = HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + 2 * HEARTBEAT_INTERVAL + TRANSFER
                       = 0.1 + 0.3 + 0.2 + 0.2 = 0.8 s
        a removed node hears it left on its next heartbeat's answer (one coordinator later if that
        one does not answer), registers with the next heartbeat, is sent the chain's state, and
        reports it caught up with the one after, which promotes it;
    full_length        = D + READMIT_BASE + rejoin     (1.736 + 1.0 + 0.8 = 3.536 s for a crash)
        a fault that heals just before the leader acts on it still costs one removal, and a node
        removed for failing its links is refused re-admission for READMIT_BASE after its first
        such removal; then it rejoins.

Faults last FAULT_LASTS seconds, most of them longer than the bounds, so that a fault nobody acts
on shows as a violation rather than healing in time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keychain import timing
from keychain.coordinator.raft import Role
from keychain.coordinator.registry import MemberState
from keychain.proxy.routing import RETRY_BACKOFF
from keychain.testing.sim_client import ATTEMPT_TIMEOUT
from keychain.testing.sim_faults import deafness, isolation, silence
from keychain.testing.sim_invariants import Violation
from keychain.testing.sim_node import HEARTBEAT_TIMEOUT

if TYPE_CHECKING:
    from keychain.testing.sim_cluster import Simulation
    from keychain.testing.sim_world import Process

SINGLE_FAULTS: tuple[str, ...] = ("crash", "pause", "isolate", "one-way-out", "one-way-in", "unreachable",
                                  "sync-stall")
NODE_ROLES: tuple[str, ...] = ("head", "middle", "tail")
ROLES: tuple[str, ...] = (*NODE_ROLES, "leader", "follower")
NODE_ONLY = frozenset({"unreachable"})  # kinds that make sense for a chain node alone

PROPOSAL_COMMIT = 0.05  # a registry change's Raft round and sync, with room for a lossy network
TRANSFER = 0.2  # a state transfer of the simulated key space, and its start
SILENT = timing.HEARTBEAT_INTERVAL + timing.REMOVAL_AFTER * (1 + timing.MAX_DRIFT) + timing.TICK
GRAY = 2 * (timing.LINK_TIMEOUT + 3 * timing.HEARTBEAT_INTERVAL + PROPOSAL_COMMIT)
UNHEARD = timing.LINK_TIMEOUT + SILENT
STALLED = timing.SYNC_STALL + 3 * timing.HEARTBEAT_INTERVAL + PROPOSAL_COMMIT
DETECTION = {"crash": SILENT, "pause": SILENT, "isolate": SILENT, "one-way-out": SILENT, "one-way-in": UNHEARD,
             "unreachable": GRAY, "sync-stall": STALLED}  # a chain node's, by the kind of its fault
RECONFIGURE = PROPOSAL_COMMIT + timing.HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT
CLIENT_RETRY = ATTEMPT_TIMEOUT + RETRY_BACKOFF.cap
REJOIN = timing.HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + 2 * timing.HEARTBEAT_INTERVAL + TRANSFER


def detection(kind: str, role: str) -> float:
    """The longest the leader may take to remove the victim of a `kind` fault of a `role` process."""
    return DETECTION[kind] if role in NODE_ROLES else SILENT


def writes_resume(kind: str, role: str) -> float:
    """The longest acknowledged writes may stop while (or after) such a fault lasts."""
    return detection(kind, role) + RECONFIGURE + CLIENT_RETRY


def full_length(kind: str, role: str) -> float:
    """The longest the chain may take to be whole again after such a fault healed."""
    return detection(kind, role) + timing.READMIT_BASE + REJOIN


# When the fault begins: the chain formed long before (it takes well under 1 s), and the first
# leader is past its grace (NEW_LEADER_GRACE + LEASE + REMOVAL_MARGIN after its election, which
# comes within half a second): a single fault strikes a settled cluster, as in production, and
# the write gaps measured here are a settled cluster's.
FAULT_AT = (3.5, 4.0)
FAULT_LASTS = (1.0, 5.0)
WATCH_EVERY = 0.02  # seconds between two looks at the acknowledged writes and the chain
SETTLE = 1.0  # quiet seconds after the last check, before the end-of-run safety checks
RUN_LENGTH = FAULT_AT[1] + FAULT_LASTS[1] + max(full_length(k, r) for k in SINGLE_FAULTS for r in ROLES) + SETTLE


class SingleFault:
    """One fault of one process, its healing, and the two liveness properties (module docstring)."""

    def __init__(self, sim: Simulation, kinds: tuple[str, ...], roles: tuple[str, ...]) -> None:
        unknown = sorted(set(kinds) - set(SINGLE_FAULTS)) + sorted(set(roles) - set(ROLES))
        if unknown or not kinds or not roles:
            raise ValueError(f"liveness needs fault kinds among {', '.join(SINGLE_FAULTS)} and roles among "
                             f"{', '.join(ROLES)}; got {', '.join(kinds) or 'no kinds'} / "
                             f"{', '.join(roles) or 'no roles'}")
        rng = sim.world.rng
        self.sim = sim
        self.kind = rng.choice(kinds)
        fitting = [r for r in roles if r in NODE_ROLES or self.kind not in NODE_ONLY]
        if not fitting:
            raise ValueError(f"fault kind {self.kind!r} strikes chain nodes only; give a node role too")
        self.role = rng.choice(fitting)
        self.start_at = rng.uniform(*FAULT_AT)
        self.heal_at = self.start_at + rng.uniform(*FAULT_LASTS)
        self.resume_bound = writes_resume(self.kind, self.role)
        self.full_bound = full_length(self.kind, self.role)
        self.check_until = self.heal_at + self.full_bound
        self.victim: Process | None = None
        self.blocked: list[tuple[str, str]] = []
        self.full_at: float | None = None  # when the chain was whole again after the fault healed

    def begin(self) -> None:
        self.sim.world.at(self.start_at, self._strike)

    # ---- the fault ----

    def _strike(self) -> None:
        sim = self.sim
        state = sim.latest_chain()
        active = [m.id for m in state.members if m.state is MemberState.ACTIVE] if state is not None else []
        if state is None or len(active) != sim.initial_nodes or len(state.members) != len(active):
            raise Violation("liveness-full-length",
                            f"{len(active)} of the {sim.initial_nodes} nodes were active "
                            f"{self.start_at:.3f} s into the run, before any fault")
        victim = self._pick(active)
        self.victim = victim
        ids = [p.id for p in sim.processes()]
        kind = self.kind
        if kind == "crash":
            victim.crash()  # type: ignore[attr-defined]
        elif kind == "pause":
            victim.pause()
        elif kind == "sync-stall":
            victim.stalled_until = self.heal_at
        elif kind == "unreachable":
            sim.nemesis.close_port(victim)
        else:
            self.blocked = {
                "isolate": lambda: isolation(victim.id, ids),
                "one-way-out": lambda: silence(victim.id, ids),
                "one-way-in": lambda: deafness(victim.id, ids),
            }[kind]()
            for a, b in self.blocked:
                sim.net.block(a, b)
            sim.net.cut_streams()
        sim.world.note("single-fault", kind, self.role, victim.id, round(self.heal_at - self.start_at, 3))
        sim.world.at(self.heal_at, self._heal)
        sim.world.after(WATCH_EVERY, self._watch)

    def _pick(self, active: list[str]) -> Process:
        sim, rng, role = self.sim, self.sim.world.rng, self.role
        if role in NODE_ROLES:
            node = {"head": active[0], "tail": active[-1]}.get(role) or rng.choice(active[1:-1])
            return sim.nodes[node]
        leaders = [c for c in sim.coordinators.values() if c.up and c.role is Role.LEADER]
        if role == "leader":
            if not leaders:
                raise Violation("liveness-writes-resume", f"no coordinator led {self.start_at:.3f} s into the run")
            return leaders[-1]
        return rng.choice([c for c in sim.coordinators.values() if c not in leaders])

    def _heal(self) -> None:
        victim = self.victim
        assert victim is not None
        kind = self.kind
        if kind == "crash":
            victim.start()  # type: ignore[attr-defined]
        elif kind == "pause":
            victim.resume()
        elif kind == "sync-stall":
            victim.stalled_until = 0.0
        self.sim.net.closed.discard(victim.id)
        for a, b in self.blocked:
            self.sim.net.unblock(a, b)
        self.sim.world.note("healed", kind, victim.id)

    # ---- the properties ----

    def _watch(self) -> None:
        sim = self.sim
        now = sim.world.now
        acked = sim.acked_at
        since = max(acked[-1] if acked else 0.0, self.start_at)
        if now - since > self.resume_bound:
            raise Violation("liveness-writes-resume",
                            f"{self._what()}: no write acknowledged from {since:.3f} to {now:.3f} "
                            f"({now - since:.2f} s), beyond the bound of {self.resume_bound:.2f} s")
        if now >= self.heal_at and self.full_at is None and self._full_length():
            self.full_at = now
        if now >= self.check_until:
            if self.full_at is None:
                raise Violation("liveness-full-length",
                                f"{self._what()}: the chain was not whole again {self.full_bound:.2f} s after the "
                                f"fault healed; {self._chain()}")
            return
        sim.world.after(WATCH_EVERY, self._watch)

    def _full_length(self) -> bool:
        state = self.sim.latest_chain()
        return state is not None and len(state.active) == len(state.members) == self.sim.initial_nodes

    def _chain(self) -> str:
        state = self.sim.latest_chain()
        return state.describe() if state is not None else "no chain"

    def _what(self) -> str:
        victim = self.victim.id if self.victim is not None else "?"
        return (f"{self.kind} of the {self.role} {victim} from {self.start_at:.3f} to {self.heal_at:.3f} "
                f"({self.heal_at - self.start_at:.2f} s)")

    def stats(self) -> dict[str, Any]:
        """The fault and what the writes did: the longest stretch without an acknowledged write while
        it lasted and after it healed, and how long the chain took to be whole again."""
        acked, now = self.sim.acked_at, self.sim.world.now
        return {
            "fault": f"{self.kind} {self.role} {self.victim.id if self.victim else '-'}",
            "fault_seconds": round(self.heal_at - self.start_at, 3),
            "write_gap_during": round(_longest_gap(acked, self.start_at, min(self.heal_at, now)), 3),
            "write_gap_after": round(_longest_gap(acked, self.heal_at, min(self.check_until, now)), 3),
            "full_length_after": None if self.full_at is None else round(self.full_at - self.heal_at, 3),
        }


def _longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] holding none of `times` (ascending)."""
    if end <= start:
        return 0.0
    longest, last = 0.0, start
    for t in times:
        if start < t < end:
            longest = max(longest, t - last)
            last = t
    return max(longest, end - last)
