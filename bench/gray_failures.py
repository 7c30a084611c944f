"""Write gaps under gray failures: one fault at a time on one member of a real cluster (3 coordinators,
3 chain nodes, each in its own network namespace; needs root), under client load.

    PYTHONSAFEPATH=1 .venv/bin/python bench/gray_failures.py --runs 5
    PYTHONSAFEPATH=1 .venv/bin/python bench/gray_failures.py --runs 1 --faults pause --roles tail
    PYTHONSAFEPATH=1 .venv/bin/python bench/gray_failures.py --runs 5 --via-proxy

--via-proxy sends the load through a real proxy (its gRPC KV API), as an application's would, so
the proxy's reports of a node it cannot reach take part (a head whose listening port drops every
packet is found only that way). Without it the load goes to the nodes directly.

Faults: crash (kill -9, restarted at the heal), pause (SIGSTOP/SIGCONT), one-way-in and one-way-out
(every packet to / from the member's listening port dropped), stalled-syncs (the node's fsyncs
block; chain nodes only). Roles: head, middle, tail, coordinator-leader. Each run starts a fresh
cluster and goes through every (fault, role) row; each row lasts --fault-seconds.

For each row: the longest stretch without an acknowledged write while the fault lasted, and from the
heal until the chain is whole again plus 1 s (tests/chaos/gray_cluster.py), as median and maximum
over the runs. Targets (issue "gray failures"): <= 2 s during, <= 1 s after. Every history is also
checked linearizable. Figures depend on the machine (its load average is printed); a benchmark,
not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "chaos"))

from gray_cluster import FAULT_KINDS, ROLES, GrayCluster, Measurement, assert_sound, gray_cluster, supported

from keychain.testing.netns import unavailable_reason

TARGET_DURING, TARGET_AFTER = 2.0, 1.0


@dataclass
class Row:
    kind: str
    role: str
    during: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runs that did not recover, or broke a check
    ok: int = 0  # runs measured with every check passed

    def add(self, m: Measurement | None, problem: str | None) -> None:
        if m is not None:
            self.during.append(m.gaps.during)
            self.after.append(m.gaps.after)
        if problem:
            self.failures.append(problem)
        else:
            self.ok += 1


def _figures(values: list[float]) -> str:
    if not values:
        return f"{'-':>6} {'-':>6}"
    return f"{statistics.median(values):6.2f} {max(values):6.2f}"


def table(rows: Sequence[Row], runs: int) -> str:
    """The rows as a table: median and maximum of each gap, and whether the targets hold."""
    lines = [
        f"{'fault':<14} {'role':<19} {'during: median':>14} {'max':>6}  {'after: median':>13} {'max':>6}  {'ok runs':>7}",
    ]
    for r in rows:
        during, after = _figures(r.during).split(), _figures(r.after).split()
        meets = r.during and r.after and max(r.during) <= TARGET_DURING and max(r.after) <= TARGET_AFTER
        lines.append(f"{r.kind:<14} {r.role:<19} {during[0]:>14} {during[1]:>6}  {after[0]:>13} {after[1]:>6}  "
                     f"{r.ok:>3}/{runs:<3}{'' if meets else '  (target missed)'}")
    return "\n".join(lines)


def measure_row(cluster: GrayCluster, kind: str, role: str, seconds: float) -> tuple[Measurement | None, str | None]:
    """One fault on a running cluster: the measurement and what went wrong, if anything."""
    try:
        m = cluster.measure(kind, role, duration=seconds)
    except AssertionError as e:
        return None, f"did not recover: {str(e).splitlines()[0]}"
    try:
        assert_sound(m.history, m.acks)
    except AssertionError as e:
        return m, f"check failed: {str(e).splitlines()[0]}"
    return m, None


def run_all(rows: list[Row], runs: int, seconds: float,
            one_run: Callable[[list[Row], float, Path], None] | None = None, *, via_proxy: bool = False) -> None:
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="keychain-gray-") as tmp:
            if one_run is not None:
                one_run(rows, seconds, Path(tmp))
            else:
                _one_run(rows, seconds, Path(tmp), via_proxy=via_proxy)
        print(f"run {i + 1}/{runs} done", flush=True)


def _one_run(rows: list[Row], seconds: float, root: Path, *, via_proxy: bool = False) -> None:
    with gray_cluster(root, via_proxy=via_proxy) as cluster:
        for row in rows:
            m, problem = measure_row(cluster, row.kind, row.role, seconds)
            row.add(m, problem)
            shown = (f"during {m.gaps.during:.2f} s, after {m.gaps.after:.2f} s" if m else "no figures")
            print(f"  {row.kind} / {row.role}: {shown}{f'  [{problem}]' if problem else ''}", flush=True)
            if m is None:  # the cluster did not recover: later rows need a fresh one
                return


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--faults", default=",".join(FAULT_KINDS), help=f"comma-separated, of {', '.join(FAULT_KINDS)}")
    p.add_argument("--roles", default=",".join(ROLES), help=f"comma-separated, of {', '.join(ROLES)}")
    p.add_argument("--fault-seconds", type=float, default=3.0, help="how long each fault lasts")
    p.add_argument("--via-proxy", action="store_true", help="load through a real proxy's gRPC KV API")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    kinds, roles = args.faults.split(","), args.roles.split(",")
    for k in kinds:
        if k not in FAULT_KINDS:
            p.error(f"unknown fault {k!r}")
    for r in roles:
        if r not in ROLES:
            p.error(f"unknown role {r!r}")
    why = unavailable_reason()
    if why is not None:
        print(f"network namespaces are unavailable here: {why}", file=sys.stderr)
        return 2
    rows = [Row(k, r) for k in kinds for r in roles if supported(k, r)]
    started = time.monotonic()
    load_before = os.getloadavg()
    run_all(rows, args.runs, args.fault_seconds, via_proxy=args.via_proxy)
    load_after = os.getloadavg()
    print(f"\nwrite gaps in seconds over {args.runs} run(s), faults of {args.fault_seconds:g} s "
          f"(targets: during <= {TARGET_DURING:g}, after <= {TARGET_AFTER:g}); took {time.monotonic() - started:.0f} s")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}, {os.cpu_count()} cores")
    print(table(rows, args.runs))
    problems = [(r, f) for r in rows for f in r.failures]
    for r, f in problems:
        print(f"  {r.kind} / {r.role}: {f}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
