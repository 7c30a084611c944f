"""Failure detection for chain nodes: which silent members the coordinator leader should remove.

A node heartbeats the leader; each heartbeat renews the node's lease, and a node serves nothing
once its lease has lapsed. The leader removes a node only after its lease has *certainly*
expired: silent for longer than `lease + margin`, where the margin covers clock-rate drift and
message delay between node and coordinator. A leader that has just been elected has no record
of who heartbeated its predecessor, so it first waits a full `lease + margin` from its election,
as if it had heard from everyone at that moment. The last active member of a chain is never
removed (the registry would refuse anyway): when every active member is silent, the one heard
most recently stays (the tail on a tie, as it holds every committed write). Removals go one per
chain at a time, each conditional on the epoch it was decided in.

The same rule removes a live node on request (an operator's scale-in): `drain` stops renewing its
lease, and its removal is decided like a silent node's, once the last lease granted to it has
certainly expired (or it surrendered it, as below). Until then it stays in the chain, so the
chain keeps working through it.

The tracker is the one record of when each member was last granted a lease (`lease_valid`
answers "may its lease still run", for health reports); `expired` forgets members no longer in a
chain.

No removal may leave a chain without a copy of every acknowledged write. A node promoted to tail
runs its new epoch before its predecessor does: for up to a heartbeat the old tail, still in the old
epoch, acknowledges writes as if it were the tail, and the new tail holds them only once it has
caught up with its predecessor in the new epoch. So an ACTIVE member is removed only if another
active member has reported (in a heartbeat, `record_in_sync`) that it is in sync in the chain's
current epoch: it holds everything committed, those writes included. Otherwise the removal waits,
as the node may come back. The cost is availability: if the only members in sync fail (say the
head dies before the new tail has caught up), the chain stays as it is, without a working head or
tail, until one of them returns; a new epoch also needs one heartbeat of such evidence before the
next removal. A SYNCING member never holds the only copy of an acknowledged write and is removed
without it.

A removal that has been proposed but not applied is *in flight*: the node gets no lease meanwhile
(`observe` answers False), for the entry may still commit and the node must not serve then. It
ends when the entry applies: the node is gone, or the chain's epoch moved past the one the removal
was decided in (the registry refuses it then), or the shell reports that the proposal never
entered the log (`withdraw`). Then the node is renewed again like any other.

A live node can be removed for a gray failure too (suspicion.py decides which): `revoke` stops
renewing its lease, as a drain does, so it is removed once its last lease has certainly expired.
That wait (`lease + margin`, ~1.5 s) comes on top of the detection, and would break the goal of a
write gap under 2 s; so the node is asked to give its lease up instead. Every heartbeat it sends
is answered with lease 0 ("revoked"); a node that gets such an answer drops its lease at once,
ignores from then on every lease granted to a request it sent earlier, and says so in its next
heartbeats: `surrendered_below` = the number of its first heartbeat sent after it dropped the lease
(heartbeats are numbered in the order sent, `seq`). The tracker remembers the highest heartbeat
number it had received from the node when it revoked (`fence`); every lease it ever granted that
node answered a heartbeat numbered at most `fence` (none is granted after the revocation), or a
registration, which is not numbered but was answered before the node sent the first heartbeat
received after it; so once a heartbeat reports `surrendered_below` above both, no lease granted
by this leader is running or can start running at the node, and the removal may proceed at once
(`surrender`). A new leader's
grace still applies (a deposed leader's grants are not covered by the fence), and so does the
rule that keeps a member in sync. If the node never surrenders (it runs an older version, its
replies are lost) the removal waits for its lease to expire, as a drain's does. A revocation is
tied to the epoch it was decided in: if the chain moves on first, the node is renewed again and
judged afresh.

The leader's own condition for granting any lease at all (a quorum of voters acknowledged it
recently enough that no other leader can have been elected long ago) is supervision.py's
`leadership_fresh`; this tracker records only the grants made.

Time is a number passed in by the caller (milliseconds in the shell, ticks in tests); nothing
here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from keychain.coordinator.registry import ChainState, MemberState, remove_node


@dataclass(frozen=True, slots=True)
class Removal:
    chain: str
    node: str
    epoch: int  # the chain's epoch when the decision was made; the removal is void if it moved

    def command(self) -> bytes:
        return remove_node(self.chain, self.node, if_epoch=self.epoch)


@dataclass
class LeaseTracker:
    lease: float  # how long one heartbeat keeps a node's lease alive
    margin: float  # extra silence required before a lease counts as certainly expired
    leader_since: float | None = None  # None: not the leader, decide nothing
    last_heard: dict[tuple[str, str], float] = field(default_factory=dict)  # when its last lease was granted
    # Removals in flight: when each was (last) proposed, and the epoch it was decided in.
    proposed: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    draining: set[tuple[str, str]] = field(default_factory=set)  # to be removed: no lease renewals
    in_sync: dict[tuple[str, str], int] = field(default_factory=dict)  # newest epoch it reported in sync in
    # Removals for gray failures: the epoch decided in, and why.
    revoked: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    # Revoked or drained: the highest heartbeat number received then, which a surrender must pass.
    fences: dict[tuple[str, str], int] = field(default_factory=dict)
    surrendered: set[tuple[str, str]] = field(default_factory=set)  # revoked or drained, and gave every lease up
    seq_seen: dict[tuple[str, str], int] = field(default_factory=dict)  # its highest heartbeat number
    # The number of the first heartbeat received after its last registration was granted a lease
    # (None: none received yet). Registrations are not numbered; that heartbeat was sent after the
    # node had the registration's grant, so a surrender must pass it too.
    first_after_register: dict[tuple[str, str], int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lease <= 0 or self.margin < 0:
            raise ValueError(f"lease must be positive and margin non-negative, got {self.lease}, {self.margin}")

    def become_leader(self, now: float) -> None:
        self._forget_all()
        self.leader_since = now

    def step_down(self) -> None:
        self._forget_all()
        self.leader_since = None

    def _forget_all(self) -> None:
        # A new term starts from nothing: an older leader's removal entries are applied before a
        # new leader serves anything (it first commits an entry of its own term).
        self.last_heard.clear()
        self.proposed.clear()
        self.draining.clear()
        self.in_sync.clear()
        self.revoked.clear()
        self.fences.clear()
        self.surrendered.clear()
        self.seq_seen.clear()
        self.first_after_register.clear()

    def observe(self, chain: str, node: str, now: float, epoch: int, seq: int = 0) -> bool:
        """A heartbeat numbered `seq` (or a registration, 0) from `node`, a member of `chain` at
        `epoch` (the registry's current epoch), arrived at `now`: renew its lease, unless it is
        draining, revoked or its removal is in flight. True if a lease is granted."""
        key = (chain, node)
        self.seq_seen[key] = max(seq, self.seq_seen.get(key, 0))
        if seq and key in self.first_after_register and self.first_after_register[key] is None:
            self.first_after_register[key] = seq
        in_flight = self.proposed.get(key)
        if in_flight is not None and in_flight[1] != epoch:
            del self.proposed[key]  # the chain moved on: that removal is refused, if it ever applies
        revoked = self.revoked.get(key)
        if revoked is not None and revoked[0] != epoch and key not in self.proposed:
            self._unrevoke(key)  # the chain moved on first: judged afresh
        if key in self.draining or key in self.proposed or key in self.revoked:
            return False
        if not seq:
            self.first_after_register[key] = None  # a registration's grant: see first_after_register
        self.last_heard[key] = max(now, self.last_heard.get(key, now))
        return True

    def record_in_sync(self, chain: str, node: str, epoch: int) -> None:
        """`node` reported that it is in sync (holds every committed write) while running `epoch`."""
        key = (chain, node)
        self.in_sync[key] = max(epoch, self.in_sync.get(key, epoch))

    def revoke(self, chain: str, node: str, epoch: int, reason: str) -> None:
        """Remove `node` for a gray failure decided at `epoch`: renew its lease no more, and ask it to
        surrender the lease it holds (see the module docstring)."""
        key = (chain, node)
        if key not in self.revoked:
            self.revoked[key] = (epoch, reason)
            self.fences.setdefault(key, self.seq_seen.get(key, 0))

    def surrender(self, chain: str, node: str, below: int) -> bool:
        """`node` says it holds no lease and ignores every grant to a request before its heartbeat
        numbered `below`: True if that covers every lease this leader granted it (it is revoked or
        drained: none was granted since)."""
        key = (chain, node)
        fence = self.fences.get(key)
        after_register = self.first_after_register.get(key, 0)
        if fence is not None and after_register is not None and below > max(fence, after_register):
            self.surrendered.add(key)
        return key in self.surrendered

    def revocation(self, chain: str, node: str) -> str | None:
        """Why `node` is being removed for a gray failure (None: it is not)."""
        revoked = self.revoked.get((chain, node))
        return None if revoked is None else revoked[1]

    def _unrevoke(self, key: tuple[str, str]) -> None:
        self.revoked.pop(key, None)
        if key not in self.draining:
            self.fences.pop(key, None)
            self.surrendered.discard(key)

    def withdraw(self, removal: Removal) -> None:
        """`removal` did not enter the log (or was refused): the node is renewed again."""
        key = (removal.chain, removal.node)
        in_flight = self.proposed.get(key)
        if in_flight is not None and in_flight[1] == removal.epoch:
            del self.proposed[key]

    def in_flight(self, chain: str, node: str) -> bool:
        """Whether a removal of `node` has been proposed and may still apply."""
        return (chain, node) in self.proposed

    def keeps_every_write(self, chain: ChainState, node: str) -> bool:
        """Whether removing `node` from `chain` leaves an active member that reported being in sync
        in the chain's current epoch (see the module docstring)."""
        member = chain.member(node)
        if member is None or member.state is MemberState.SYNCING:
            return True
        return any(self.in_sync.get((chain.name, m.id)) == chain.epoch for m in chain.active if m.id != node)

    def drain(self, chain: str, node: str) -> None:
        """Renew `node`'s lease no more; `expired` removes it once the last one granted has
        certainly expired (`lease + margin` after the leader's start if it granted none)."""
        self.draining.add((chain, node))
        self.fences.setdefault((chain, node), self.seq_seen.get((chain, node), 0))

    def lease_valid(self, chain: str, node: str, now: float) -> bool:
        """Whether the last lease this leader granted `node` may still be running."""
        at = self.last_heard.get((chain, node))
        return at is not None and now - at <= self.lease

    def may_remove(self, now: float) -> bool:
        """Whether this leader is past its grace: every lease an earlier leader granted has lapsed."""
        return self.leader_since is not None and now - self.leader_since > self.lease + self.margin

    def expired(self, now: float, chains: Iterable[ChainState]) -> list[Removal]:
        """The removals to propose now, given the current configurations."""
        if not self.may_remove(now):
            return []
        deadline = self.lease + self.margin
        removals: list[Removal] = []
        members: set[tuple[str, str]] = set()
        for chain in chains:
            heard = {m.id: self.last_heard.get((chain.name, m.id), self.leader_since) for m in chain.members}
            members.update((chain.name, m.id) for m in chain.members)
            silent = {node for node, at in heard.items() if now - at > deadline}
            for m in chain.members:  # a node that surrendered its lease holds none: as if silent
                key = (chain.name, m.id)
                revoked = self.revoked.get(key)
                if revoked is not None and revoked[0] != chain.epoch and key not in self.proposed:
                    self._unrevoke(key)
                elif key in self.surrendered:
                    silent.add(m.id)
            active = [m.id for m in chain.active]
            if active and all(node in silent for node in active):
                # Keep one: the most recently heard, the one nearest the tail on a tie.
                keep = max(reversed(active), key=lambda node: heard[node])
                silent.discard(keep)
            for m in chain.members:
                key = (chain.name, m.id)
                if key in self.proposed and self.proposed[key][1] != chain.epoch:
                    del self.proposed[key]  # decided in an older epoch: refused, if it ever applies
            # One removal per chain at a time: each is conditional on the epoch it was decided in,
            # so the next one is decided against the configuration that results.
            for m in chain.members:
                key = (chain.name, m.id)
                if m.id not in silent or not self.keeps_every_write(chain, m.id):
                    continue  # alive, or it may hold the only copy of acknowledged writes: wait
                if key in self.proposed and now - self.proposed[key][0] < self.lease:
                    break  # already proposed; give that entry time to commit
                self.proposed[key] = (now, chain.epoch)
                removals.append(Removal(chain.name, m.id, chain.epoch))
                break
        for record in (self.last_heard, self.proposed, self.in_sync, self.revoked, self.fences, self.seq_seen,
                       self.first_after_register):
            for key in [k for k in record if k not in members]:
                del record[key]
        self.draining &= members
        self.surrendered &= members
        return removals

