"""The gray-failure benchmark's own logic: every (fault, role) row is measured in every run, a run
whose cluster does not recover stops early, and the table shows medians, maxima and missed targets.
The cluster is real only when the benchmark is run by hand (the same harness runs in
tests/chaos/test_chaos_gray_failures.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gray_failures.py"
spec = importlib.util.spec_from_file_location("bench_gray_failures", BENCH)
assert spec and spec.loader
gray = importlib.util.module_from_spec(spec)
sys.modules["bench_gray_failures"] = gray
spec.loader.exec_module(gray)

from gray_cluster import Measurement  # noqa: E402  (on the path the bench module set)

from keychain.testing.write_gaps import WriteGaps  # noqa: E402


class FakeCluster:
    def __init__(self, gaps: dict[tuple[str, str], list[WriteGaps | None]]) -> None:
        self.gaps = gaps

    def measure(self, kind: str, role: str, *, duration: float) -> Measurement:
        g = self.gaps[(kind, role)].pop(0)
        if g is None:
            raise AssertionError("no a whole cluster after the heal within 30s")
        history = []  # checked below with assert_sound replaced
        return Measurement(kind, role, "node-1", g, history, {}, 0.1)


def test_rows_collect_every_run_and_the_table_shows_medians_maxima_and_missed_targets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster({
        ("pause", "tail"): [WriteGaps(1.5, 0.2), WriteGaps(1.7, 0.4), WriteGaps(1.6, 0.3)],
        ("one-way-in", "head"): [WriteGaps(2.6, 0.9), None, WriteGaps(2.4, 1.3)],
    })
    monkeypatch.setattr(gray, "assert_sound", lambda history, acks: None)
    rows = [gray.Row("pause", "tail"), gray.Row("one-way-in", "head")]

    def one_run(rows, seconds, root):
        for row in rows:
            row.add(*gray.measure_row(fake, row.kind, row.role, seconds))

    gray.run_all(rows, 3, 1.0, one_run=one_run)
    text = gray.table(rows, 3)
    pause, one_way = text.splitlines()[1:]
    assert pause.split()[2:7] == ["1.60", "1.70", "0.30", "0.40", "3/3"]
    assert "target missed" not in pause
    assert one_way.split()[2:7] == ["2.50", "2.60", "1.10", "1.30", "2/3"]
    assert "target missed" in one_way
    assert rows[1].failures == ["did not recover: no a whole cluster after the heal within 30s"]


def test_stalled_syncs_of_a_coordinator_are_not_a_row():
    assert not gray.supported("stalled-syncs", "coordinator-leader")
    assert gray.supported("stalled-syncs", "tail")
