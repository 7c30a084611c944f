"""The pace of the state transfers a node sends: a token bucket over the bytes of its chunks.

A state transfer streams a node's whole key space to a joining successor. Unpaced, the sender spends
its CPU and disk reading and encoding chunks as fast as the receiver takes them, and the writes and
reads it serves meanwhile wait behind them. The bucket lets a transfer run at `rate` bytes per second
on average, with at most `burst` bytes sent at once; the shell sleeps for what `take` answers before
sending a chunk. Pure and deterministic: the time is passed in, nothing here reads a clock or sleeps.

Written by hand: the decision is a few lines, and the shell needs it as a value it can test and
record, not as a rate-limited wrapper around its I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1_000_000

# The default pace of a node's outgoing state transfers, in MB/s. A node's foreground write stream is
# small beside it (thousands of writes/s of about 100-byte values: well under 1 MB/s); what a transfer
# takes from the traffic served meanwhile is CPU, at the sender (reading and encoding chunks) and at
# the receiver (which installs no faster than it is sent). bench/data_size.py measured at most
# 0.06-0.09 CPU-seconds per MB on each side, so a pace of R MB/s costs each under 0.1 * R of a core:
# at 4 MB/s under half a core, leaving the rest of a one-core member to its foreground traffic. On
# two shared cores the chain kept 0.83x its foreground writes/s during a join paced at 1 MB/s, 0.62x
# at 4 MB/s and 0.48x unpaced (6.6 MB/s) (bench/README.md, "Cost of data size"). 1 MB/s would take
# two minutes per million 100-byte keys (123 MB on the wire) and three hours for 10 GB; 4 MB/s takes
# about 30 s and 45 minutes. A member with cores to spare, or a larger data set, raises it
# (--transfer-rate-mb).
DEFAULT_TRANSFER_RATE_MB = 4.0


@dataclass(slots=True)
class TokenBucket:
    """`rate` bytes per second (0: unlimited), at most `burst` bytes ahead of that rate.

    A chunk larger than the tokens at hand is still sent whole, once the bucket has refilled to cover
    it: `take` puts the bucket in debt and answers how long the debt takes to pay off. So through any
    moment t, the bytes sent since the first take at t0 never exceed burst + rate * (t - t0)."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float | None = None  # when `tokens` was last brought up to date

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 0:
            raise ValueError(f"a token bucket needs a rate and a burst of at least 0, not {self.rate}, {self.burst}")
        self.tokens = self.burst

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def take(self, nbytes: int, now: float) -> float:
        """Spend `nbytes` at `now`; returns the seconds to wait before sending them (0: send now).
        The caller sends only after that wait, and calls again with a `now` no earlier than this one."""
        if self.unlimited:
            return 0.0
        if self.at is not None and now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now if self.at is None else max(now, self.at)
        self.tokens -= nbytes
        return max(0.0, -self.tokens / self.rate)


def transfer_bucket(rate_mb: float, burst_bytes: int) -> TokenBucket:
    """The bucket for a `--transfer-rate-mb` setting (megabytes of 10^6 bytes per second, 0: unlimited).
    `burst_bytes` lets one largest chunk go out without waiting."""
    return TokenBucket(rate=rate_mb * MB, burst=burst_bytes)
