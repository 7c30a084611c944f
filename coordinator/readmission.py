"""Re-admission of removed nodes: how long the coordinator leader refuses a node's registration.

A pure core: no I/O, no clock. A node removed because its links failed (suspicion.py) would
register again at once and be appended as a syncing member; if its fault persists, its links fail
again and it is removed again, in a loop that costs the chain a reconfiguration each time. So
after its n-th such removal its registration is held back `base * 2^(n-1)` seconds (at most
`cap`); the count starts over once it has gone `forget` seconds without one. The first hold is
short, so a node whose fault healed rejoins (through the normal join path: registered, appended
after the tail as syncing, promoted once caught up) within about a second.

A node drained on purpose (RemoveMember, an operator's scale-in) is held back `drain_hold`: its
process is stopping, and registering again meanwhile it would be appended, promoted and briefly
become the tail, stalling writes when it stops.

Holds live in the leader's memory: a new leader starts without them (re-admission is a matter of
liveness, never of safety: a re-admitted node joins as syncing and proves itself again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keychain import timing


@dataclass(frozen=True, slots=True)
class Hold:
    chain: str
    node: str
    until: float
    removals: int  # removals for link failures counted towards the backoff (0 for a drain)
    reason: str

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)


@dataclass
class Readmission:
    base: float = timing.READMIT_BASE
    cap: float = timing.READMIT_CAP
    forget: float = timing.READMIT_FORGET
    drain_hold: float = timing.DRAIN_HOLD
    counts: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # removals, the last at
    holds: dict[tuple[str, str], Hold] = field(default_factory=dict)
    imposed: int = 0  # holds imposed for link failures so far (a metric)

    def removed_for_links(self, chain: str, node: str, now: float, reason: str) -> Hold:
        """`node` was removed at `now` because its links failed: hold it back, longer each time."""
        key = (chain, node)
        n, last = self.counts.get(key, (0, now))
        n = 1 if n == 0 or now - last > self.forget else n + 1
        self.counts[key] = (n, now)
        hold = Hold(chain, node, now + min(self.cap, self.base * 2 ** (n - 1)), n, reason)
        self.holds[key] = hold
        self.imposed += 1
        return hold

    def drained(self, chain: str, node: str, now: float) -> Hold:
        """`node` was removed at `now` on request: hold it back while its process stops."""
        hold = Hold(chain, node, now + self.drain_hold, 0, "drained on request")
        self.holds[(chain, node)] = hold
        return hold

    def hold(self, chain: str, node: str, now: float) -> Hold | None:
        """The hold on `node`'s registration at `now`, if one still runs."""
        hold = self.holds.get((chain, node))
        if hold is not None and hold.remaining(now) <= 0:
            del self.holds[(chain, node)]
            return None
        return hold

    def held(self, chain: str, now: float) -> list[Hold]:
        """The holds still running in `chain`."""
        return [h for (c, n) in list(self.holds) if c == chain and (h := self.hold(c, n, now)) is not None]

    def forget_old(self, now: float) -> None:
        for key in [k for k, h in self.holds.items() if h.remaining(now) <= 0]:
            del self.holds[key]
        for key in [k for k, (_, last) in self.counts.items() if now - last > self.forget]:
            del self.counts[key]
