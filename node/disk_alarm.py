"""The storage alarm: when a node's disk counts as full, and when it stops being full.

A pure decision (no I/O, no clock): the shell samples the free and total bytes of the volume that
holds the data directory and feeds them to `DiskAlarm.observe`. Modelled on etcd's NOSPACE alarm:
a node whose disk is full stays up and serves reads; the chain refuses new writes at the head,
before they are sequenced, naming the node (`Code.INSUFFICIENT_STORAGE`); deletes are still
accepted, so an operator can free space through the API; once space is back the alarm clears and
writes resume, with no restart.

The high-water mark is a *free-space* floor, given as bytes, a percentage of the volume, or both
("2%,256MiB": the larger of the two). The default, `DEFAULT_HIGH_WATER`, leaves room for what must
still land after the alarm is raised: entries the head sequenced before it learned of the alarm (at
most `max_inflight_entries` per link, and in practice a few batches), the deletes that free space,
and RocksDB's own flushes and compactions, which write new files before they delete old ones.
256 MiB covers several memtables (64 MiB each by default); 2% keeps the same proportion on a large
volume, where a compaction rewrites more.

Hysteresis: the alarm clears only once free space is back above the mark plus a quarter of it, so a
chain at the edge does not flap between accepting and refusing writes on every sample.

A second, lower floor guards the store itself: a Ready is not written while the free space, less
what the Ready adds, would fall below `reserve` (an eighth of the mark, at least 1 MiB). RocksDB
cannot recover from a failed write-ahead-log append without reopening the database, and reopening
needs free space; holding the Ready (the core's contract: nothing of it leaves before it is
durable) costs only time. The shell writes it once space is back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keychain.node.messages import Entry
from keychain.node.versions import AppendEntries, InstallKeys, Record

DEFAULT_HIGH_WATER = "2%,256MiB"
MIN_RESERVE = 1 << 20

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2, "mib": 1 << 20,
          "g": 1000**3, "gb": 1000**3, "gib": 1 << 30, "t": 1000**4, "tb": 1000**4, "tib": 1 << 40}
_TERM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|[a-zA-Z]*)\s*$")


@dataclass(frozen=True, slots=True)
class HighWater:
    """Free space below `max(free_bytes, free_percent% of the volume)` raises the alarm."""

    free_bytes: int = 0
    free_percent: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> HighWater:
        """'256MiB', '5%', or both separated by a comma (the larger applies). ValueError if malformed."""
        free_bytes, percent = 0, 0.0
        terms = [t for t in spec.split(",") if t.strip()]
        if not terms:
            raise ValueError("the disk high-water mark is empty")
        for term in terms:
            m = _TERM.match(term)
            if m is None:
                raise ValueError(f"bad disk high-water mark {term.strip()!r}: give bytes (e.g. 256MiB) or a percentage (e.g. 5%)")
            number, unit = float(m.group(1)), m.group(2).lower()
            if unit == "%":
                if number >= 100:
                    raise ValueError(f"a disk high-water mark of {number}% would refuse every write")
                percent = max(percent, number)
            elif unit in _UNITS:
                free_bytes = max(free_bytes, int(number * _UNITS[unit]))
            else:
                raise ValueError(f"bad unit {m.group(2)!r} in disk high-water mark {term.strip()!r}")
        return cls(free_bytes, percent)

    def mark(self, total: int) -> int:
        """The free-space floor, in bytes, on a volume of `total` bytes."""
        return max(self.free_bytes, int(total * self.free_percent / 100))


@dataclass(frozen=True, slots=True)
class DiskSample:
    free: int  # bytes available to this process (statvfs f_bavail)
    total: int


class DiskAlarm:
    """The alarm of one node's data volume, raised below the mark and cleared with hysteresis."""

    def __init__(self, high_water: HighWater) -> None:
        self.high_water = high_water
        self.raised = False
        self.last: DiskSample | None = None

    def observe(self, sample: DiskSample) -> bool:
        """Take a sample; returns whether the alarm is raised now."""
        self.last = sample
        mark = self.high_water.mark(sample.total)
        if self.raised:
            self.raised = sample.free < mark + mark // 4
        else:
            self.raised = sample.free < mark
        return self.raised

    def reserve(self, total: int) -> int:
        """Free bytes the store keeps untouched (see the module docstring)."""
        return max(MIN_RESERVE, self.high_water.mark(total) // 8)

    def may_persist(self, needed: int, sample: DiskSample | None = None) -> bool:
        """Whether `needed` more bytes may be written, per `sample` (default: the last one observed;
        True before any). It does not change the alarm."""
        s = sample or self.last
        if s is None:
            return True
        return s.free - needed >= self.reserve(s.total)


def records_bytes(records: list[Record]) -> int:
    """A generous estimate of what applying `records` adds to the volume: an appended entry is written
    to the log, as a dirty version and, when it commits, as the clean one, each through the
    write-ahead log and later a table file."""
    total = 0
    for r in records:
        if isinstance(r, AppendEntries):
            total += sum(3 * _entry_bytes(e) for e in r.entries)
        elif isinstance(r, InstallKeys):
            total += sum(2 * (len(kv.key) + len(kv.value) + _RECORD_OVERHEAD) for kv in r.keys)
            total += sum(2 * (len(o.request_id) + _RECORD_OVERHEAD) for o in r.outcomes)
        else:
            total += _RECORD_OVERHEAD
    return total


def _entry_bytes(e: Entry) -> int:
    if not (e.writes or e.results):  # a plain entry: every Ready's entries come here
        return len(e.key) + len(e.value) + len(e.request_id) + _RECORD_OVERHEAD
    # A transaction's entry holds its writes and the results of its gets (kept with its outcome).
    writes = sum(len(w.key) + len(w.value) + _RECORD_OVERHEAD for w in e.writes)
    results = sum(len(t.value) for t in e.results)
    return len(e.key) + len(e.value) + len(e.request_id) + _RECORD_OVERHEAD + writes + results


_RECORD_OVERHEAD = 64
