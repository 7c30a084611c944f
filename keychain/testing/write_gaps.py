"""Write gaps around a fault: how long acknowledged writes stopped while it lasted and after it healed.

A gap is the longest stretch of time inside a window in which no write was acknowledged; the
window's own edges count as acknowledgements, so a window with none in it is one gap as long as
itself. The fault's window runs from its start to its heal; the heal's window from the heal until
the chain is whole again plus a short settle time (a node that rejoins is a reconfiguration too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from keychain.testing.history import Operation


@dataclass(frozen=True, slots=True)
class WriteGaps:
    during: float  # seconds: the longest stretch without an acknowledged write while the fault lasted
    after: float  # seconds: the same from the heal until the chain was whole again and settled


def longest_gap(acks: Iterable[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] containing no time of `acks`."""
    if end < start:
        raise ValueError(f"a window ends after it starts, not {start}..{end}")
    edges = [start, *sorted(t for t in acks if start < t < end), end]
    return max(b - a for a, b in pairwise(edges))


def acknowledged_writes(history: Iterable[Operation]) -> list[float]:
    """When each acknowledged write of a history was answered."""
    return [op.end for op in history if op.op in ("put", "delete") and op.status == "ok" and op.end is not None]


def write_gaps(history: Iterable[Operation], fault: float, healed: float, settled: float) -> WriteGaps:
    """The gaps of a fault that began at `fault`, healed at `healed`, the chain settled at `settled`."""
    acks = acknowledged_writes(history)
    return WriteGaps(during=longest_gap(acks, fault, healed), after=longest_gap(acks, healed, settled))
