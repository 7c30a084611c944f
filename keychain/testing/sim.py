"""Deterministic simulation of a KeychainDB cluster: run seeds, report failures, replay one.

    python -P -m keychain.testing.sim --seeds 200              # seeds 0..199
    python -P -m keychain.testing.sim --seeds 500 --start 1000 --jobs 2
    python -P -m keychain.testing.sim --minutes 10             # a campaign: as many seeds as fit
    python -P -m keychain.testing.sim --replay 1234            # one seed, its trace and figures
    python -P -m keychain.testing.sim --seeds 200 --multikey 0.2   # with range reads and transactions
    python -P -m keychain.testing.sim --seeds 100 --watchers 2      # with watching clients, streams checked

Each seed builds and runs one cluster (see keychain.testing.sim_cluster): the real Raft and CRAQ
cores under a nemesis of partitions, crashes, slow disks, lossy networks, clock drift and
membership changes, with invariants checked as it goes and the client history checked for
linearizability at the end. A failing seed prints the violated property, the last events of its
trace and the command that replays it; the exit status is 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace

from keychain.testing.history import write_history
from keychain.testing.sim_cluster import MULTIKEY, RunResult, SimConfig, run_seed
from keychain.testing.sim_faults import FAULTS

DEFAULTS = SimConfig()


def replay_command(seed: int, config: SimConfig) -> str:
    """The one command that runs `seed` again exactly as it ran (same options)."""
    parts = ["python -P -m keychain.testing.sim", f"--replay {seed}"]
    if config.duration != DEFAULTS.duration:
        parts.append(f"--duration {config.duration:g}")
    if config.heal != DEFAULTS.heal:
        parts.append(f"--heal {config.heal:g}")
    if config.fault_gap != DEFAULTS.fault_gap:
        parts.append(f"--fault-gap {config.fault_gap:g}")
    if config.multikey != DEFAULTS.multikey:
        parts.append(f"--multikey {config.multikey:g}")
    if config.watchers != DEFAULTS.watchers:
        parts.append(f"--watchers {config.watchers}")
    if config.faults != DEFAULTS.faults:
        parts.append(f"--faults {','.join(config.faults) or 'none'}")
    return " ".join(parts)


def report_failure(result: RunResult, config: SimConfig, trace_lines: int) -> str:
    v = result.violation
    assert v is not None
    lines = [f"FAIL seed {result.seed}: {v.prop}", f"  {v.detail}", f"  last {trace_lines} events:"]
    lines += ["    " + line for line in result.trace_tail[-trace_lines - 1:]]
    lines.append(f"  replay: {replay_command(result.seed, config)}")
    return "\n".join(lines)


def _seeds(start: int, count: int | None, minutes: float | None) -> Iterator[int]:
    deadline = time.monotonic() + minutes * 60 if minutes is not None else None
    seed = start
    while (count is None or seed < start + count) and (deadline is None or time.monotonic() < deadline):
        yield seed
        seed += 1


def _run(args: tuple[int, SimConfig]) -> RunResult:
    result = run_seed(*args)
    result.history = []  # not needed by the campaign, and costly to send between processes
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m keychain.testing.sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, help="how many seeds to run (default 100, or unbounded with --minutes)")
    p.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--minutes", type=float, help="run seeds until this much wall-clock time has passed")
    p.add_argument("--replay", type=int, metavar="SEED", help="run one seed and show its trace and figures")
    p.add_argument("--duration", type=float, default=DEFAULTS.duration, help="virtual seconds per seed")
    p.add_argument("--heal", type=float, default=DEFAULTS.heal, help="fault-free virtual seconds at the end")
    p.add_argument("--fault-gap", type=float, default=DEFAULTS.fault_gap, help="mean virtual seconds between faults")
    p.add_argument("--faults", default=",".join(DEFAULTS.faults),
                   help=f"comma-separated fault kinds, or 'none' (default: all of {','.join(FAULTS)})")
    p.add_argument("--multikey", type=float, default=DEFAULTS.multikey,
                   help=f"share of client operations that are range reads and transactions (e.g. {MULTIKEY:g}; "
                        "default 0: single-key operations only)")
    p.add_argument("--watchers", type=int, default=DEFAULTS.watchers,
                   help="clients that watch, resuming across failures; their streams are checked against "
                        "the committed order (default %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes (default 1)")
    p.add_argument("--trace", type=int, default=30, metavar="N", help="trace events shown for a failure")
    p.add_argument("--history", metavar="FILE", help="with --replay: write the client history (JSON lines)")
    p.add_argument("--log-level", default="critical", help="log level of the cores (default: critical)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    faults = () if args.faults == "none" else tuple(f for f in args.faults.split(",") if f)
    try:
        config = replace(DEFAULTS, duration=args.duration, heal=args.heal, fault_gap=args.fault_gap, faults=faults,
                         multikey=args.multikey, watchers=args.watchers)
        if args.jobs < 1 or args.trace < 0:
            raise ValueError("--jobs must be at least 1 and --trace not negative")
        if args.seeds is not None and args.seeds < 0:
            raise ValueError("--seeds must not be negative")
        if args.minutes is not None and args.minutes <= 0:
            raise ValueError("--minutes must be positive")
    except ValueError as exc:
        print(f"keychain.testing.sim: {exc}", file=sys.stderr)
        return 2
    if args.replay is not None:
        return _replay(args.replay, config, args.trace, args.history)
    count = args.seeds if args.seeds is not None else (None if args.minutes is not None else 100)
    return _campaign(_seeds(args.start, count, args.minutes), config, args.jobs, args.trace)


def _replay(seed: int, config: SimConfig, trace_lines: int, history: str | None) -> int:
    result = run_seed(seed, config)
    for key, value in result.stats.items():
        print(f"{key}: {value}")
    print(f"trace hash: {result.trace_hash}")
    if history:
        write_history(result.history, history)
        print(f"history: {len(result.history)} operations written to {history}")
    if result.ok:
        print(f"seed {seed}: ok")
        return 0
    print(report_failure(result, config, trace_lines))
    return 1


def _parallel(seeds: Iterator[int], config: SimConfig, jobs: int) -> Iterator[RunResult]:
    """Results in seed order, with a bounded number of seeds in flight (the seed source may be endless)."""
    with ProcessPoolExecutor(jobs) as pool:
        pending: deque[Future[RunResult]] = deque()
        for seed in seeds:
            pending.append(pool.submit(_run, (seed, config)))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _campaign(seeds: Iterator[int], config: SimConfig, jobs: int, trace_lines: int) -> int:
    wall = time.perf_counter()
    runs = failures = 0
    virtual = 0.0
    faults: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    results = (_run((s, config)) for s in seeds) if jobs == 1 else _parallel(seeds, config, jobs)
    for result in results:
        runs += 1
        virtual += result.stats.get("virtual_seconds", 0.0)
        faults.update(result.stats.get("faults", {}))
        verdicts[result.stats.get("history_verdict", "not checked")] += 1
        if not result.ok:
            failures += 1
            print(report_failure(result, config, trace_lines), flush=True)
    elapsed = time.perf_counter() - wall
    print(f"{runs} seeds, {failures} failed; {virtual:.0f} simulated seconds ({virtual / 3600:.2f} h) "
          f"in {elapsed:.1f} s of wall-clock time")
    print("faults injected: " + (", ".join(f"{k} {faults[k]}" for k in FAULTS if faults[k]) or "none"))
    print("histories: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
