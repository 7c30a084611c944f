"""The leader's view of one follower's log: how far it matches and how to send it more.

A follower is in one of three states (as in etcd's raft):
- PROBE: the leader does not know where the logs diverge; one append at a time, each waiting for
  its answer (or the next heartbeat) before the next.
- REPLICATE: the logs agree up to `match`; appends are pipelined optimistically, at most
  `max_inflight` unanswered messages at once.
- SNAPSHOT: the entries the follower needs are compacted; a snapshot is on its way and nothing
  else is sent until it is acknowledged or reported failed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class ProgressState(StrEnum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass
class Progress:
    next: int
    match: int = 0
    max_inflight: int = 256
    learner: bool = False
    state: ProgressState = ProgressState.PROBE
    pending_snapshot: int = 0
    probe_sent: bool = False  # PROBE: an append is unanswered, send nothing more yet
    recent_active: bool = False  # heard from since the last CheckQuorum round
    inflight: deque[int] = field(default_factory=deque)  # last index of each unanswered append

    def become_probe(self) -> None:
        # After a snapshot, continue right after it; otherwise right after what is known to match.
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflight.clear()

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged `index`; False if that is old news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int) -> None:
        """An append carrying entries up to `last_index` was sent."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def free_acknowledged(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The append with prev index `rejected` was refused; back `next` off. False if stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:  # an answer to an append we have since moved past
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:  # not the answer to the probe now outstanding
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        match self.state:
            case ProgressState.PROBE:
                return self.probe_sent
            case ProgressState.REPLICATE:
                return len(self.inflight) >= self.max_inflight
            case ProgressState.SNAPSHOT:
                return True
        return False  # pragma: no cover

    def describe(self) -> str:
        extra = f" pending_snapshot={self.pending_snapshot}" if self.state is ProgressState.SNAPSHOT else ""
        paused = " paused" if self.is_paused() else ""
        learner = " learner" if self.learner else ""
        return f"{self.state.value} match={self.match} next={self.next}{extra}{paused}{learner}"
