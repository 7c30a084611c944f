"""The data-size benchmark's figures: the foreground windows a join is judged by, the 10 GB row's
disk check, and the report's rows. (A real run takes minutes; it is run by hand, see bench/README.md.)"""

from __future__ import annotations

import importlib.util
import sys
from collections import namedtuple
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "data_size.py"
spec = importlib.util.spec_from_file_location("bench_data_size", BENCH)
assert spec and spec.loader
data_size = importlib.util.module_from_spec(spec)
sys.modules["bench_data_size"] = data_size  # dataclasses look their module up by name
spec.loader.exec_module(data_size)

Window, SizeRow, JoinRow, RestartRow, Results = (data_size.Window, data_size.SizeRow, data_size.JoinRow,
                                                 data_size.RestartRow, data_size.Results)


def test_a_window_counts_only_the_requests_that_finished_inside_it() -> None:
    # (finished at, latency, ops): two requests before the window, four inside it, one after.
    samples = [(0.5, 0.010, 16), (0.9, 0.010, 16), (1.0, 0.020, 16), (1.5, 0.020, 16), (1.9, 0.040, 16),
               (2.9, 0.080, 16), (3.0, 0.5, 16)]
    w = data_size.window(samples, 1.0, 3.0)
    assert w.ops_per_s == pytest.approx(4 * 16 / 2.0)
    assert (w.p50_ms, w.p99_ms) == (pytest.approx(40.0), pytest.approx(80.0))


def test_the_10_gb_row_is_skipped_with_its_reason_when_the_disk_is_too_small(monkeypatch: pytest.MonkeyPatch) -> None:
    args = data_size.parse_args(["--big-gb", "10"])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(data_size.shutil, "disk_usage", lambda _: usage(100e9, 95e9, 5e9))
    keys, why = data_size.big_keys(args)
    assert keys == 0 and "5.0 GB free" in why
    monkeypatch.setattr(data_size.shutil, "disk_usage", lambda _: usage(500e9, 100e9, 400e9))
    keys, why = data_size.big_keys(args)
    assert why is None and keys == int(10e9 / (data_size.KEY_BYTES + 100))
    keys, why = data_size.big_keys(data_size.parse_args([]))
    assert keys == 0 and "not asked for" in why and "the disk would allow it (400 GB free" in why


def test_a_big_row_not_asked_for_says_how_long_its_load_would_take() -> None:
    w = Window(1.0, 1.0, 1.0)
    measured = SizeRow(1_000_000, 113_000_000, 500.0, 2000.0, w, w, {}, {})
    why = data_size.big_load_estimate("10 GB row: skipped, not asked for", [measured])
    assert why.endswith("about 12.2 h at the 2,000 keys/s measured here")  # 87.5M keys to go at 2000/s


def test_the_report_compares_the_sizes_and_both_joins() -> None:
    w = Window(1000.0, 10.0, 20.0)
    small = SizeRow(10_000, 1_130_000, 1.0, 10_000.0, w, Window(20_000.0, 5.0, 9.0),
                    {"n1": 80_000_000}, {"n1": 2_260_000})
    large = SizeRow(1_000_000, 113_000_000, 100.0, 10_000.0, Window(800.0, 12.0, 30.0), Window(10_000.0, 8.0, 20.0),
                    {"n1": 377_000_000}, {"n1": 226_000_000})
    joins = [JoinRow("sender paced at 4 MB/s", 4.0, 30.0, 30.5, 120e6, 20.0, 9.0, 20.0, w, Window(900.0, 11.0, 25.0)),
             JoinRow("sender unpaced", 0.0, 10.0, 10.2, 120e6, 0.0, 9.0, 21.0, w, Window(400.0, 40.0, 90.0))]
    results = Results("1.00 1.00 1.00", [small, large], ["10 GB row: skipped"], joins,
                      RestartRow(60.0, 120_000, 3.5, False), "2.00 2.00 2.00")
    text = data_size.report(results, "cmd")
    assert "writes/s x0.80, reads/s x0.50" in text
    assert "RSS grows by 300 MB per million keys" in text
    assert large.disk_per_logical == 2.0
    paced, unpaced = (line for line in text.splitlines() if line.startswith("sender"))
    assert "4.0" in paced and "12.0" in unpaced  # MB/s: 120 MB over 30 s, over 10 s
    assert "level again 3.5s after rejoining, by the log" in text
    assert "load average before: 1.00 1.00 1.00   after: 2.00 2.00 2.00" in text
