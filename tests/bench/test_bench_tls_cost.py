"""The TLS-cost benchmark's own logic: the alternating order of its rounds, the median it shows and
its figures. The clusters and the load are real only when the benchmark is run by hand."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from keychain.commands import BenchResult

BENCH = Path(__file__).resolve().parents[2] / "bench" / "tls_cost.py"
spec = importlib.util.spec_from_file_location("bench_tls_cost", BENCH)
assert spec and spec.loader
tls_cost = importlib.util.module_from_spec(spec)
sys.modules["bench_tls_cost"] = tls_cost
spec.loader.exec_module(tls_cost)


def phase(op: str, count: int, seconds: float = 10.0, server_cores: float = 1.0) -> object:
    result = BenchResult(seconds=seconds)
    result.latencies[op] = [0.001 * (i + 1) for i in range(count)]
    return tls_cost.Phase(result, op, server_cores, 0.1)


def test_rounds_alternate_which_mode_goes_first_and_the_median_round_is_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []
    counts = iter([100, 300, 200, 50, 400, 250])

    def fake_mode(opts: argparse.Namespace, mode: str) -> dict[str, object]:
        order.append(mode)
        n = next(counts)
        return {"write": phase("write", n), "read": phase("read", 2 * n)}

    monkeypatch.setattr(tls_cost, "bench_mode", fake_mode)
    rounds = tls_cost.run_rounds(tls_cost.parse_args(["--rounds", "3"]))
    assert order == ["plain", "tls", "tls", "plain", "plain", "tls"]
    plain = [p.ops_per_second for p in rounds["plain"]["write"]]
    assert plain == [10.0, 5.0, 40.0]
    assert tls_cost.median_phase(rounds["plain"]["write"]).ops_per_second == 10.0
    assert tls_cost.median_phase(rounds["tls"]["write"]).ops_per_second == 25.0


def test_the_table_gives_both_modes_their_ratio_and_cpu_per_operation() -> None:
    results = {
        "plain": {"write": phase("write", 1000, server_cores=1.0), "read": phase("read", 2000)},
        "tls": {"write": phase("write", 500, server_cores=0.75), "read": phase("read", 1000)},
    }
    table = tls_cost.render(results)
    writes = next(line for line in table.splitlines() if line.startswith("writes/s"))
    assert writes.split()[-3:] == ["100", "50.00", "0.50x"]
    per_write = next(line for line in table.splitlines() if line.startswith("cluster CPU ms per write"))
    assert per_write.split()[-3:] == ["10.00", "15.00", "1.50x"]


def test_bad_options_are_refused() -> None:
    for argv in (["--rounds", "0"], ["--duration", "0"], ["--concurrency", "0"]):
        with pytest.raises(SystemExit):
            tls_cost.parse_args(argv)
