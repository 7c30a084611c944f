"""The simulator with range reads and two-key transactions among the clients' operations: a set of
seeds under every fault, all of which must pass, their histories checked on a model of the whole key
space (a range or a transaction links the keys it touches into one group)."""

from __future__ import annotations

from keychain.testing.history import Operation
from keychain.testing.sim import report_failure
from keychain.testing.sim_cluster import MULTIKEY, SimConfig, run_seed

SEEDS = range(20)


def test_every_seed_with_ranges_and_transactions_passes_and_issues_both():
    config = SimConfig(multikey=MULTIKEY)
    failures = []
    done: list[Operation] = []
    for seed in SEEDS:
        result = run_seed(seed, config)
        if not result.ok:
            failures.append(report_failure(result, config, trace_lines=20))
        assert result.stats["history_verdict"] == "linearizable" or not result.ok
        done += [op for op in result.history if op.status == "ok" and op.op in ("range", "txn")]
    assert not failures, "\n\n".join(failures)
    ranges = [op for op in done if op.op == "range"]
    txns = [op for op in done if op.op == "txn"]
    assert any(op.items for op in ranges) and any(op.succeeded for op in txns) and any(not op.succeeded for op in txns)


def test_seeds_whose_nodes_collect_deletes_and_compact_history_pass():
    # A horizon of 3 seqs: tombstones and superseded versions are dropped within every run, under
    # crashes, restarts and state transfers (whose receivers sweep the collected keys away).
    config = SimConfig(multikey=MULTIKEY, retain_versions=3, watchers=1)
    failures = []
    collected = []
    for seed in range(3):
        result = run_seed(seed, config)
        if not result.ok:
            failures.append(report_failure(result, config, trace_lines=20))
        collected.append(result.stats["collected_seq"])
    assert not failures, "\n\n".join(failures)
    assert all(collected), f"every run collected deletes (through seqs {collected})"
