"""ReadIndex bookkeeping on the leader (Raft thesis §6.4).

A linearizable read records the commit index at the time it arrives, then the leader confirms it
is still leader by a round of heartbeats carrying the read's context. Once a majority of voters
has answered, the read (and every read queued before it) may be served as soon as the state
machine has applied through the recorded index.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read that may be served once the state machine has applied `index`."""

    index: int
    context: bytes


@dataclass
class PendingRead:
    index: int
    requester: str  # the member whose client asked; the leader itself or a follower
    context: bytes
    acks: set[str] = field(default_factory=set)


@dataclass
class ReadIndexQueue:
    pending: dict[bytes, PendingRead] = field(default_factory=dict)  # in arrival order

    def add(self, index: int, requester: str, context: bytes) -> bool:
        """Queue a read; False if a read with this context is already waiting."""
        if context in self.pending:
            return False
        self.pending[context] = PendingRead(index, requester, context)
        return True

    def acknowledge(self, context: bytes, member: str) -> set[str]:
        """Record a heartbeat answer; the set of members that confirmed that read so far."""
        read = self.pending.get(context)
        if read is None:
            return set()
        read.acks.add(member)
        return read.acks

    def release_through(self, context: bytes) -> list[PendingRead]:
        """Confirmed: this read and all queued before it (a later quorum confirms earlier reads)."""
        if context not in self.pending:
            return []
        released: list[PendingRead] = []
        for ctx in list(self.pending):
            released.append(self.pending.pop(ctx))
            if ctx == context:
                break
        return released

    def last_context(self) -> bytes | None:
        return next(reversed(self.pending), None) if self.pending else None

    def clear(self) -> None:
        self.pending.clear()
