"""Exponential backoff with jitter: how long to wait before the next attempt.

Pure: the delay is a function of the attempt number and a draw from an injected
`random.Random`, so the same policy runs in the node, the proxy, the client and the simulator,
and a seeded test replays the same delays. Each user names its own bounds (`Backoff(base, cap,
floor)`); this module only says how a bound grows and where in it the delay falls.

- The bound doubles per attempt from `base` and never exceeds `cap` (however many attempts).
- The delay is drawn uniformly from `[floor * bound, bound]`: `floor=0` is "full jitter" (callers
  that retry many independent requests spread out best), `floor=0.5` keeps at least half the bound
  (a reconnecting stream that must not hammer a peer that just refused it).

Written by hand: retry libraries run the loop and the sleeping themselves and draw jitter from
the global random module, while the callers here need only the delay, drawn from their own seeded
generator (the simulator replays a schedule from its seed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2**64 times any sane base is past any sane cap; the bound keeps the float finite for any attempt.
_MAX_DOUBLINGS = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    """A backoff policy: `delay(attempt, rng)` for attempt 0, 1, 2, ... (0 is the first retry)."""

    base: float
    cap: float
    floor: float = 0.0  # the share of the bound that is always waited

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, not base={self.base} cap={self.cap}")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"backoff floor is a share of the bound in [0, 1], not {self.floor}")

    def bound(self, attempt: int) -> float:
        """The longest delay of `attempt`: `base * 2**attempt`, at most `cap`."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), _MAX_DOUBLINGS))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A delay drawn uniformly from `[floor * bound, bound]` of `attempt`."""
        bound = self.bound(attempt)
        return rng.uniform(self.floor * bound, bound)


class FailureStreak:
    """Delays over consecutive failures of one thing (a link, a transfer): each failure waits longer,
    a success starts over."""

    def __init__(self, policy: Backoff, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.failures = 0

    def delay(self) -> float:
        """Record one more failure; the delay before the next attempt."""
        d = self.policy.delay(self.failures, self.rng)
        self.failures += 1
        return d

    def reset(self) -> None:
        """The thing succeeded: the next failure waits as little as the first."""
        self.failures = 0
