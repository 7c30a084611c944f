"""The CRAQ-vs-tail benchmark: its figures and report, and one short run on a real 3-node chain that
shows what it measures (CRAQ spreads reads over every node, tail-only reads reach the tail alone)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "craq_vs_tail.py"
spec = importlib.util.spec_from_file_location("bench_craq_vs_tail", BENCH)
assert spec and spec.loader
craq_vs_tail = importlib.util.module_from_spec(spec)
sys.modules["bench_craq_vs_tail"] = craq_vs_tail  # dataclasses look their module up by name
spec.loader.exec_module(craq_vs_tail)

NodeFigures, RunResult = craq_vs_tail.NodeFigures, craq_vs_tail.RunResult


def run(mode: str, load: str, served: tuple[int, int, int], queried: tuple[int, int, int],
        cpu: tuple[float, float, float]) -> RunResult:
    ids = craq_vs_tail.node_ids(len(served))
    nodes = {i: NodeFigures(s, q, c) for i, s, q, c in zip(ids, served, queried, cpu, strict=True)}
    return RunResult(mode, load, 2.0, sum(served), 0, 10 if load == "read-mostly" else 0,
                     [0.001 * (i + 1) for i in range(100)], nodes, 0.5)


def test_percentiles_are_nearest_rank():
    samples = [float(i) for i in range(1, 101)]
    assert craq_vs_tail.percentile(samples, 50) == 50.0
    assert craq_vs_tail.percentile(samples, 99) == 99.0
    assert craq_vs_tail.percentile([3.0], 99) == 3.0


def test_the_report_puts_both_modes_side_by_side_with_ratios_and_cpu_per_read_per_node():
    results = [
        run("tail", "read-mostly", (0, 0, 4000), (0, 0, 0), (0.1, 0.1, 0.4)),
        run("craq", "read-mostly", (2000, 2000, 2000), (100, 50, 0), (0.2, 0.2, 0.2)),
    ]
    craq = results[1]
    assert craq.reads_per_s == 3000 and craq.queried_share() == 150 / 6000
    assert craq.nodes["n1"].cpu_us_per_read() == 100.0 and results[0].nodes["n1"].cpu_us_per_read() is None
    text = craq_vs_tail.report(results, "settings line")
    lines = text.splitlines()
    assert lines[0] == "settings line"
    assert "read-only" not in text, "a load without both runs is left out"
    scaling = next(line for line in lines if "read-mostly" in line)
    assert scaling.split() == ["3", "read-mostly", "2,000", "3,000", "1.50x", "2.7x", "no", "5/5"]
    reads = next(line for line in lines if line.strip().startswith("reads/s"))
    assert reads.split()[-3:] == ["2,000", "3,000", "1.50x"]
    queried = next(line for line in lines if "version query" in line)
    assert queried.split()[-3:] == ["0.00", "2.50", "-"]
    head = next(line for line in lines if line.strip().startswith("n1 head"))
    assert head.split()[-4:] == ["0", "0.00", "0.05", "-"], "the tail-only head served nothing"
    assert "CRAQ" in lines[lines.index(head) + 1] and lines[lines.index(head) + 1].split()[-1] == "100.0"


def test_the_scaling_table_has_a_row_per_chain_length_and_load_with_the_goal_of_0_9_per_node():
    results = [
        run("tail", "read-only", (1000,), (0,), (0.2,)),
        run("craq", "read-only", (1000,), (0,), (0.2,)),
        run("tail", "read-only", (0, 0, 0, 0, 1000), (0,) * 5, (0.2,) * 5),
        run("craq", "read-only", (900,) * 5, (0,) * 5, (0.2,) * 5),
    ]
    rows = [line.split() for line in craq_vs_tail.scaling_table(results)[1:]]
    assert rows == [["1", "read-only", "500", "500", "1.00x", "0.9x", "yes", "-"],
                    ["5", "read-only", "500", "2,250", "4.50x", "4.5x", "yes", "-"]]
    assert [craq_vs_tail.role(i, 5) for i in craq_vs_tail.node_ids(5)] == ["head", "middle", "middle", "middle",
                                                                            "tail"]
    assert craq_vs_tail.role("n1", 1) == "only"


def test_bad_settings_are_refused_clearly(capsys: pytest.CaptureFixture[str]):
    for argv in (["--seconds", "0"], ["--seconds", "61"], ["--batch", "0"], ["--write-share", "1"],
                 ["--nodes", "0,3"], ["--nodes", "three"], ["--member-cpu", "0"]):
        with pytest.raises(SystemExit):
            craq_vs_tail.parse_args(argv)
    assert "--member-cpu must be above 0" in capsys.readouterr().err
    assert craq_vs_tail.parse_args([]).nodes == [1, 3, 5, 7]


@pytest.mark.process
def test_a_short_run_spreads_craq_reads_over_every_node_and_tail_only_reads_reach_the_tail_alone():
    out = subprocess.run(
        [sys.executable, "-P", str(BENCH), "--nodes", "3", "--seconds", "0.5", "--readers", "4", "--keys", "50"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith(craq_vs_tail.RESULT_PREFIX))
    runs = {(r["mode"], r["load"]): r for r in json.loads(line.removeprefix(craq_vs_tail.RESULT_PREFIX))["runs"]}
    assert set(runs) == {(m, load) for m in craq_vs_tail.MODES for load in craq_vs_tail.LOADS}
    for (mode, load), r in runs.items():
        served = {i: n["served"] for i, n in r["nodes"].items()}
        assert r["read_errors"] == 0 and r["reads_per_s"] > 0, (mode, load)
        if mode == "craq":
            assert all(served.values()), served
        else:
            assert served["n1"] == served["n2"] == 0 < served["n3"], served
        assert r["nodes"]["n3"]["version_queries"] == 0, "the tail never asks anyone"
        assert (r["writes_per_s"] > 0) == (load == "read-mostly")
    assert runs[("craq", "read-only")]["version_query_share"] == 0.0, "nothing is dirty without writes"
    assert "CRAQ/tail" in out.stdout
